r"""DAC — diffusion actor-critic: KL-constrained policy iteration as noise regression.

A diffusion policy on the variance-preserving (DDPM) schedule, parameterised by its noise
prediction $\hat\varepsilon_\theta(t, x \mid s)$ (score $-\hat\varepsilon_\theta/\beta_t$).

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the pessimistic (lower-confidence-bound) target of the target ensemble,
   with $a'$ from the DDPM sampler at $s'$.
2. **Actor.** Noisy actions $x_t = \alpha_t a + \beta_t x_0$, $t$ uniform on the sampler's grid
   $\{k/T\}$, and one step on the soft Q-guidance loss
   ([`soft_q_guidance_loss`][interpolant_rl.objectives.soft_q_guidance_loss])

   $$\mathcal L(\theta) = \operatorname{mean}\,\tfrac1d\Big(
     \alpha\,\big\|\hat\varepsilon_\theta(t, x_t, s) - x_0\big\|^2
     + \beta_t\,\big\langle \hat g,\ \hat\varepsilon_\theta(t, x_t, s)\big\rangle\Big),\qquad
     \hat g = \frac{\nabla_a \bar Q^-(s, x_t)}{\mathrm{sg}\,\operatorname{mean}|\bar Q^-(s, a)|},$$

   i.e. the noise prediction regresses on $x_0 - \frac{\beta_t}{2\alpha}\hat g$: its minimiser is
   the score $s_\beta + \frac{1}{2\alpha}\hat g$, the tilt of the behaviour policy by
   $e^{Q/(2\alpha\,\mathrm{mean}|Q|)}$ with the critic taken at the noisy action.
3. **Act.** $T$ DDPM posterior steps from $\mathcal N(0, I)$ with the *clipped denoised-action
   reconstruction*: $\hat x_1 = \operatorname{clip}((x - \beta_t\hat\varepsilon_\theta)/\alpha_t,
   -1, 1)$ before every step ([`ddpm_sample`][interpolant_rl.ddpm_sample]).

The protocol's $\alpha$ is DAC's behaviour-cloning weight $\eta$ (larger is closer to the data).
"""

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._interpolant import VariancePreservingInterpolant
from ..objectives import soft_q_guidance_loss
from ._agent import AbstractAgent
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig
from ._diffusion import create_diffusion_agent, DiffusionPolicy, noisy_action_gradient
from ._optim import check_optimiser, ClipMode


@dataclasses.dataclass(frozen=True)
class DACConfig(Hyperparameters):
    """DAC hyperparameters (defaults: the QAM paper's cube-double column, alpha = 3)."""

    alpha: float = 3.0  # BC weight eta of the noise regression (cube-triple 0.3, scene 1)
    normalise_q: bool = True  # divide grad Q by sg(mean |Q(s, a)|) at the data actions (DAC)
    diffusion_steps: int = 10  # DDPM steps T (sampling; training times t = k/T)
    beta_min: float = 0.1  # VP noise rate at the data end
    beta_max: float = 10.0  # VP noise rate at the noise end
    actor: NetworkConfig = NetworkConfig()  # the noise-prediction network: 4x512 GELU
    critic: CriticConfig = CriticConfig(grad_clip=1.0)  # LCB target rho = 0.5, clip 1 (Table 3)
    learning_rate: float = 3e-4  # Adam step size of the actor
    grad_clip: float | None = 1.0  # gradient clipping of the actor (Table 3: 1)
    clip_mode: ClipMode = "elementwise"  # paper §4: element-wise; reference code: "global_norm"

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        check_positive("diffusion_steps", self.diffusion_steps)
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        VariancePreservingInterpolant(self.beta_min, self.beta_max)


class DAC(AbstractAgent):
    """DAC: see the module docstring for the algorithm."""

    diffusion: DiffusionPolicy
    critic: AbstractCritic
    config: DACConfig

    def actor_step(self, batch, key):
        config = self.config
        gradient = noisy_action_gradient(self.critic)
        scale = 1.0
        if config.normalise_q:
            values = self.critic.target_batch_values(batch.observations, batch.actions)
            scale = 1.0 / jnp.maximum(jax.lax.stop_gradient(jnp.mean(jnp.abs(values))), 1e-6)

        def loss_fn(field):
            return soft_q_guidance_loss(
                self.diffusion.interpolant,
                field,
                batch.actions,
                batch.observations,
                gradient,
                key,
                bc_weight=config.alpha,
                guidance_scale=scale,
                num_steps=config.diffusion_steps,
                weights=batch.valid,
            )

        diffusion, metrics = self.diffusion.minimise(loss_fn)
        return DAC(diffusion, self.critic, config), dict(
            **metrics, guidance_scale=jnp.asarray(scale)
        )

    def acting_policy(self):
        return self.diffusion.acting_policy()


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: DACConfig = DACConfig()
) -> DAC:
    """A fresh DAC agent (random noise-prediction network and critic)."""
    return create_diffusion_agent(DAC, obs_dim, action_dim, key, config)
