r"""BAM — basic adjoint matching, the QAM paper's ablation.

The algorithm box of [QAM][interpolant_rl.agents.qam] with one change in step 3 and nothing
else (QAM paper, §5: "keep the rest exactly the same"): the regression target is the *basic*
adjoint of the fine-tuned SDE (with the running cost $\tfrac12\|u\|^2$), whose states are the
gradients that backpropagation through the sampled SDE gives, instead of the lean adjoint of the
base. Same scheme ([`QAMReferenceAdjointMatching`][interpolant_rl.objectives.QAMReferenceAdjointMatching]:
same SDE, same discretisation, same residual), same networks, same clipping, same $\tau$ (Table 4's
column is "QAM & BAM τ"): [`basic_adjoint_matching_loss`][interpolant_rl.objectives.basic_adjoint_matching_loss]
in place of [`adjoint_matching_loss`][interpolant_rl.objectives.adjoint_matching_loss].

The public reference script runs BAM with a larger $\tau$ (10 on cube-double); that value is
`domain_config("bam", domain, protocol="reference")`.
"""

import dataclasses

from jaxtyping import PRNGKeyArray

from ._adjoint_matched import create_qam, QAMConfig


def default_config() -> QAMConfig:
    """QAM's defaults (τ, scheme, networks, clipping) with `basic_adjoint=True`."""
    return dataclasses.replace(QAMConfig(), basic_adjoint=True)


def create(obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QAMConfig | None = None):
    """A fresh BAM agent: a [`QAM`][interpolant_rl.agents.qam.QAM] with `basic_adjoint=True`."""
    config = default_config() if config is None else config
    if not config.basic_adjoint:
        raise ValueError("BAM needs basic_adjoint=True (otherwise it is QAM)")
    return create_qam(obs_dim, action_dim, key, config)
