r"""FEdit — a bounded, SAC-style edit policy on top of the behaviour flow (QAM-EDIT's edit
without QAM).

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD with $a'$ the edited action at $s'$ (step 5).
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on $(s, a)$.
3. **Edit.** One step of the tanh-Gaussian edit policy $e \sim \pi_\psi(\cdot\mid s, a_0)$
   ([`ActionEdit`][interpolant_rl.agents.ActionEdit]) on SAC's reparameterised loss
   $\operatorname{mean}\big[\alpha\log\pi_\psi(e\mid s, a_0) - \bar Q\big(s, \operatorname{clip}(a_0 + \lambda e, -1, 1)\big)\big]$
   around the behaviour action $a_0 = \operatorname{clip}(\mathrm{ODE}_{f_\beta}(s, z), -1, 1)$,
   $z \sim \mathcal N(0, I)$ (no gradient through $a_0$).
4. **Temperature.** One step of $\log\alpha$ on
   [`temperature_loss`][interpolant_rl.objectives.temperature_loss] toward the target entropy
   $\bar{\mathcal H}$ of the edit $e$ (not of the action $a$; see `ActionEdit`).
5. **Act.** $a = \operatorname{clip}(a_0 + \lambda e, -1, 1)$, so $\|a - a_0\|_\infty \le \lambda$:
   the policy never leaves an $L^\infty$ ball of radius $\lambda$ (the edit scale) around the
   behaviour flow's action.

The QAM paper trains the edit policy SAC-style with a target-entropy constraint; the defaults
target entropy $\bar{\mathcal H} = -d/2$ ($d$ the flattened action dimension) and initial
temperature $\alpha_0 = 1$ are the public reference code's (`edit_target_entropy_multiplier = 0.5`,
a default `LogParam`), read there, not values stated in the paper's text.

QAM-EDIT is the same edit on the adjoint-matched flow's action instead of $a_0$.
"""

import dataclasses

import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..nn import VelocityField
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._edit import ActionEdit
from ._flow import flow_matching_step, FlowPolicy
from ._optim import adam, Trained


@dataclasses.dataclass(frozen=True)
class FEditConfig(Hyperparameters):
    """FEdit hyperparameters (defaults: the QAM paper's cube-double column)."""

    edit_scale: float = 0.2  # lambda: L-infinity radius of the edit (cube-triple 0.3, humanoid 0.5)
    flow_steps: int = 10  # Euler steps of the behaviour flow's ODE
    actor: NetworkConfig = NetworkConfig()  # behaviour flow and edit policy: 4x512 GELU
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the flow and the edit policy
    grad_clip: float | None = None  # no clipping in the protocol for FEdit
    # target entropy of the edit e = this * action_dim: -1/2 as the reference code's
    # edit_target_entropy_multiplier (the paper gives no value)
    target_entropy_per_dim: float = -0.5
    # starting SAC temperature of the edit policy: 1 as the reference code (a default LogParam)
    initial_temperature: float = 1.0

    def __post_init__(self):
        check_positive("edit_scale", self.edit_scale, allow_zero=True)
        check_positive("flow_steps", self.flow_steps)
        check_positive("learning_rate", self.learning_rate)
        check_positive("initial_temperature", self.initial_temperature)


class FEdit(AbstractAgent):
    """FEdit: see the module docstring for the algorithm."""

    behaviour: Trained
    edit: ActionEdit
    critic: AbstractCritic
    config: FEditConfig

    def base_actions(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch action_dim"]:
        r"""The behaviour flow's actions $a_0 = \operatorname{clip}(\mathrm{ODE}_{f_\beta}(s, z), -1, 1)$,
        $z \sim \mathcal N(0, I)$ drawn from `key`."""
        return self.base_policy()(observations, key)

    def base_policy(self) -> FlowPolicy:
        """The behaviour flow as a policy."""
        field = self.behaviour.model
        return FlowPolicy(field, field.action_dim, self.config.flow_steps)

    def actor_step(self, batch, key):
        bc_key, sample_key, edit_key = jr.split(key, 3)
        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, bc_key)
        agent = FEdit(behaviour, self.edit, self.critic, self.config)
        base_actions = agent.base_actions(batch.observations, sample_key)
        edit, metrics = self.edit.step(self.critic, batch, base_actions, edit_key)
        return FEdit(behaviour, edit, self.critic, self.config), dict(
            flow_matching_loss=bc_loss, **metrics
        )

    def acting_policy(self):
        """The edit on top of the behaviour flow: the edit of `base_actions(s, k1)` drawn with
        `k2`, for `k1, k2 = split(key)`."""
        return self.edit.acting_policy(self.base_policy())


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: FEditConfig = FEditConfig()
) -> FEdit:
    """A fresh FEdit agent."""
    flow_key, edit_key, critic_key = jr.split(key, 3)
    optimiser = adam(config.learning_rate, config.grad_clip)
    behaviour = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    return FEdit(
        Trained.create(behaviour, optimiser),
        ActionEdit.create(
            obs_dim,
            action_dim,
            config.actor,
            optimiser,
            config.edit_scale,
            edit_key,
            initial_temperature=config.initial_temperature,
            target_entropy_per_dim=config.target_entropy_per_dim,
        ),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
