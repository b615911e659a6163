r"""BAM — basic adjoint matching, the QAM paper's ablation.

The algorithm box of [QAM][interpolant_rl.agents.qam] with one change in step 3: the adjoint is
the *basic* adjoint of the fine-tuned memoryless SDE (with the running cost), whose states are
the gradients that backpropagation through the discretised SDE would give. It is QAM composed
with [`basic_adjoint_matching_loss`][interpolant_rl.objectives.basic_adjoint_matching_loss] on
the regularised memoryless SDE (the reference discretisation defines only the lean adjoint).
"""

import dataclasses

from jaxtyping import PRNGKeyArray

from ..objectives import MemorylessAdjointMatching
from . import qam


def default_config() -> qam.QAMConfig:
    """QAM's defaults with the basic adjoint and BAM's inverse temperature (cube-double: 10)."""
    return dataclasses.replace(
        qam.QAMConfig(), tau=10.0, basic_adjoint=True, scheme=MemorylessAdjointMatching()
    )


def create(obs_dim: int, action_dim: int, key: PRNGKeyArray, config: qam.QAMConfig | None = None):
    """A fresh BAM agent: a [`QAM`][interpolant_rl.agents.qam.QAM] with `basic_adjoint=True`."""
    config = default_config() if config is None else config
    if not config.basic_adjoint:
        raise ValueError("BAM needs basic_adjoint=True (otherwise it is QAM)")
    return qam.create(obs_dim, action_dim, key, config)
