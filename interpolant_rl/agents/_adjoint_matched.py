r"""QAM's machinery, shared by QAM, BAM, QAM-FQL and QAM-EDIT (the latter two reduce to plain
QAM at some of their Table 4 values): its configuration, the adjoint-matched flows and the QAM
agent itself. The algorithm box is [`qam`][interpolant_rl.agents.qam]'s."""

import dataclasses

import equinox as eqx
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..data import Batch
from ..nn import ema_update, ResidualField, VelocityField, zero_output
from ..objectives import (
    AbstractAdjointMatchingScheme,
    AbstractTimeSampler,
    adjoint_matching_loss,
    basic_adjoint_matching_loss,
    QAMReferenceAdjointMatching,
    UniformTimes,
)
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import FlowPolicy, sampled_flow_matching_step
from ._optim import adam, check_optimiser, ClipMode, Trained
from ._time_sampled import behaviour_time_sampler, TimeSamplerName


@dataclasses.dataclass(frozen=True)
class QAMConfig(Hyperparameters):
    """QAM hyperparameters (defaults: the paper's, cube-double column).

    On short runs `learning_rate=1e-3` (the base's Jacobian, through which the lean adjoint
    carries the critic's gradient, converges sooner) and `scheme=QAMReferenceAdjointMatching(30)`
    (mode weights are set in the SDE's first steps, coarse at T = 10) bring the policy to the
    exact tilt within 3000 updates on the toy problems, where the paper's settings stop short
    ([agents guide](../guides/agents.md#why-qams-policy-stops-short-of-the-tilt-on-short-runs))."""

    tau: float = 1.0  # inverse temperature of the tilt pi_beta * exp(tau Q) (3 for cube-triple)
    flow_steps: int = 10  # Euler steps T of the flows (sampling, SDE and adjoint)
    scheme: AbstractAdjointMatchingScheme | None = None  # None: QAMReferenceAdjointMatching(T)
    basic_adjoint: bool = False  # True: basic adjoint of the fine-tuned SDE (the BAM ablation)
    residual: bool = False  # fine flow = EMA base + a zero-initialised correction (Algorithm 1)
    actor: NetworkConfig = NetworkConfig()  # both flows: 4x512 GELU, no LayerNorm
    critic: CriticConfig = CriticConfig(grad_clip=1.0)  # K = 10, rho = 0.5, gamma = 0.99, clip 1
    learning_rate: float = 3e-4  # Adam step size of both flows
    grad_clip: float | None = 1.0  # gradient clipping of the flows (Table 3: 1 for QAM*)
    clip_mode: ClipMode = "elementwise"  # paper §4: element-wise; reference code: "global_norm"
    base_rate: float = 0.005  # EMA rate of the base copy of the behaviour flow
    time_sampler: TimeSamplerName = "uniform"  # behaviour flow's flow-matching times (issue 16)

    def __post_init__(self):
        check_positive("tau", self.tau, allow_zero=True)
        check_positive("flow_steps", self.flow_steps)
        behaviour_time_sampler(self.time_sampler)  # raises for an unknown name
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        if not 0.0 <= self.base_rate <= 1.0:
            raise ValueError(f"base_rate must lie in [0, 1], got {self.base_rate}")

    @property
    def adjoint_scheme(self) -> AbstractAdjointMatchingScheme:
        if self.scheme is None:
            return QAMReferenceAdjointMatching(self.flow_steps)
        return self.scheme


class AdjointMatchedFlow(eqx.Module):
    r"""The policy half of QAM, shared by QAM, BAM, QAM-FQL and QAM-EDIT: a behaviour flow
    $f_\beta$ (flow matching), its EMA base $\bar f_\beta$, and the fine-tuned flow $f_\theta$
    (adjoint matching against a critic).

    With `config.residual`, `fine` holds a correction $g_\theta$ whose output layer starts at
    zero, and the fine-tuned velocity is $\bar f_\beta + g_\theta$
    ([`ResidualField`][interpolant_rl.nn.ResidualField]); otherwise `fine` is a separate,
    randomly initialised velocity field. [`velocity`][interpolant_rl.agents.AdjointMatchedFlow.velocity]
    is the fine-tuned velocity either way.

    **Fields:** `behaviour`, `base`, `fine`, `action_dim`, `config` (static), `time_sampler`
    (the law of the behaviour flow's flow-matching times, from `config.time_sampler`; an
    [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler] carries its state
    here and adapts every step).
    """

    behaviour: Trained
    base: VelocityField
    fine: Trained
    action_dim: int = eqx.field(static=True)
    config: QAMConfig
    time_sampler: AbstractTimeSampler = UniformTimes()

    @classmethod
    def create(cls, obs_dim: int, action_dim: int, config: QAMConfig, key: PRNGKeyArray):
        behaviour_key, fine_key = jr.split(key)

        def field(k):
            return build_network(VelocityField, action_dim, obs_dim, config.actor, k)

        behaviour = field(behaviour_key)
        fine = zero_output(field(fine_key)) if config.residual else field(fine_key)
        optimiser = adam(config.learning_rate, config.grad_clip, config.clip_mode)
        return cls(
            Trained.create(behaviour, optimiser),
            behaviour,
            Trained.create(fine, optimiser),
            action_dim,
            config,
            behaviour_time_sampler(config.time_sampler),
        )

    def step(
        self, critic: AbstractCritic, batch: Batch, key: PRNGKeyArray
    ) -> tuple["AdjointMatchedFlow", dict]:
        """Steps 2 and 3 of the algorithm box."""
        config = self.config
        fm_key, am_key = jr.split(key)

        behaviour, time_sampler, bc_loss = sampled_flow_matching_step(
            self.behaviour, self.time_sampler, batch, fm_key
        )
        base = ema_update(self.base, behaviour.model, config.base_rate)
        objective = basic_adjoint_matching_loss if config.basic_adjoint else adjoint_matching_loss

        def fine_loss(field):
            return objective(
                config.adjoint_scheme,
                self._velocity(field, base),
                base,
                critic.target_mean_gradient,
                config.tau,
                batch.rewards.shape[0],
                self.action_dim,
                batch.observations,
                am_key,
            )

        fine, (metrics, _) = self.fine.minimise(fine_loss)
        new = AdjointMatchedFlow(behaviour, base, fine, self.action_dim, config, time_sampler)
        return new, dict(flow_matching_loss=bc_loss, **metrics)

    def _velocity(self, fine, base):
        return ResidualField(base, fine) if self.config.residual else fine

    def velocity(self) -> VelocityField | ResidualField:
        """The fine-tuned velocity $f_\\theta$ (with `residual`: $\\bar f_\\beta + g_\\theta$)."""
        return self._velocity(self.fine.model, self.base)

    def flow_policy(self) -> FlowPolicy:
        """$\\operatorname{clip}(\\mathrm{ODE}_{f_\\theta}(s, z), -1, 1)$: the fine-tuned flow as a policy."""
        return FlowPolicy(self.velocity(), self.action_dim, self.config.flow_steps)

    def sample(self, observations, key, noise=None):
        """$\\operatorname{clip}(\\mathrm{ODE}_{f_\\theta}(s, z), -1, 1)$ for a batch of states."""
        if noise is None:
            return self.flow_policy()(observations, key)
        return self.flow_policy().from_noise(observations, noise)


class QAM(AbstractAgent):
    """QAM (and BAM with `config.basic_adjoint`): see the module docstring for the algorithm."""

    flows: AdjointMatchedFlow
    critic: AbstractCritic

    def actor_step(self, batch, key):
        flows, metrics = self.flows.step(self.critic, batch, key)
        return QAM(flows, self.critic), metrics

    def acting_policy(self):
        return self.flows.flow_policy()


def create_qam(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QAMConfig = QAMConfig()
) -> QAM:
    """A fresh QAM agent (random networks, critic and flows)."""
    flow_key, critic_key = jr.split(key)
    return QAM(
        AdjointMatchedFlow.create(obs_dim, action_dim, config, flow_key),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
    )
