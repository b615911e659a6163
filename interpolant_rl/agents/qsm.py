r"""QSM — Q-score matching, with a diffusion behaviour-cloning term for offline RL.

A diffusion policy on the variance-preserving (DDPM) schedule, parameterised by its noise
prediction $\hat\varepsilon_\theta(t, x \mid s)$, so that its score is
$s_\theta = -\hat\varepsilon_\theta/\beta_t$.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the pessimistic target of the target ensemble, with $a'$ from the DDPM
   sampler at $s'$.
2. **Actor.** Noisy actions $x_t = \alpha_t a + \beta_t x_0$, $t$ uniform on the sampler's grid
   $\{k/T\}$, and one step on
   ([`q_score_matching_loss`][interpolant_rl.objectives.q_score_matching_loss])

   $$\mathcal L(\theta) = \operatorname{mean}\,\tfrac1d\Big(
     \big\|\hat\varepsilon_\theta(t, x_t, s) + \beta_t\,\lambda\,\nabla_a \bar Q^-(s, x_t)\big\|^2
     + \alpha\,\big\|\hat\varepsilon_\theta(t, x_t, s) - x_0\big\|^2\Big):$$

   the first term is Q-score matching, $\beta_t^2\|s_\theta(x_t) - \lambda\nabla_a Q(s, x_t)\|^2$
   (the critic's action gradient taken at the *noisy* action), the second the DDPM
   behaviour-cloning loss. The minimiser is the score
   $\frac{\alpha}{1+\alpha}s_\beta + \frac{\lambda}{1+\alpha}\nabla_a Q$.
3. **Act.** $T$ DDPM posterior steps from $\mathcal N(0, I)$, the denoised action clipped to
   $[-1, 1]$ at every step ([`ddpm_sample`][interpolant_rl.ddpm_sample]).

The protocol's $(\tau, \alpha)$ pair is $(\lambda, \alpha)$ = (`q_scale`, `alpha`); $\lambda$
is not the inverse temperature of a tilt $\pi_\beta e^{\lambda Q}$ (see the decisions in the
agents page), so the field is not called `tau`.
"""

import dataclasses

from jaxtyping import PRNGKeyArray

from .._interpolant import VariancePreservingInterpolant
from ..objectives import q_score_matching_loss
from ._agent import AbstractAgent
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig
from ._diffusion import create_diffusion_agent, DiffusionPolicy, noisy_action_gradient
from ._optim import check_optimiser, ClipMode


@dataclasses.dataclass(frozen=True)
class QSMConfig(Hyperparameters):
    """QSM hyperparameters (defaults: the QAM paper's cube-double column, (tau, alpha) = (1, 10))."""

    q_scale: float = (
        1.0  # protocol's QSM tau: score target q_scale * grad Q (cube-triple 10, scene 3)
    )
    alpha: float = 10.0  # weight of the diffusion BC loss (scene, puzzle, humanoidmaze: 30)
    diffusion_steps: int = 10  # DDPM steps T (sampling; training times t = k/T)
    beta_min: float = 0.1  # VP noise rate at the data end
    beta_max: float = 10.0  # VP noise rate at the noise end
    actor: NetworkConfig = NetworkConfig()  # the noise-prediction network: 4x512 GELU
    critic: CriticConfig = CriticConfig(grad_clip=1.0)  # K = 10, rho = 0.5, clip 1 (Table 3)
    learning_rate: float = 3e-4  # Adam step size of the actor
    grad_clip: float | None = 1.0  # gradient clipping of the actor (Table 3: 1)
    clip_mode: ClipMode = "elementwise"  # paper §4: element-wise; reference code: "global_norm"

    def __post_init__(self):
        check_positive("q_scale", self.q_scale, allow_zero=True)
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("diffusion_steps", self.diffusion_steps)
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        VariancePreservingInterpolant(self.beta_min, self.beta_max)


class QSM(AbstractAgent):
    """QSM: see the module docstring for the algorithm."""

    diffusion: DiffusionPolicy
    critic: AbstractCritic
    config: QSMConfig

    def actor_step(self, batch, key):
        config = self.config
        gradient = noisy_action_gradient(self.critic)

        def loss_fn(field):
            return q_score_matching_loss(
                self.diffusion.interpolant,
                field,
                batch.actions,
                batch.observations,
                gradient,
                key,
                q_scale=config.q_scale,
                bc_weight=config.alpha,
                num_steps=config.diffusion_steps,
                weights=batch.valid,
            )

        diffusion, metrics = self.diffusion.minimise(loss_fn)
        return QSM(diffusion, self.critic, config), metrics

    def acting_policy(self):
        return self.diffusion.acting_policy()


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QSMConfig = QSMConfig()
) -> QSM:
    """A fresh QSM agent (random noise-prediction network and critic)."""
    return create_diffusion_agent(QSM, obs_dim, action_dim, key, config)
