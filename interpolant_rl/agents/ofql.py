r"""OFQL — one-step flow Q-learning with a MeanFlow average-velocity policy.

Algorithm box, per update:

1. **Critic.** TD (double Q: $K = 2$, $\rho = 1$ gives the minimum) with
   $a' = \operatorname{clip}(z + u_{\theta^-}(z, 0, 1))$ from the EMA policy.
2. **Actor.** One step on
   $\mathcal L_{\text{MeanFlow}}(\theta) + \eta\,\big(-Q(s, a_\pi)/\mathrm{sg}\,\mathrm{mean}|Q|\big)$
   with $a_\pi = z + u_\theta(z, 0, 1)$ — one network evaluation, no backpropagation through
   time ([`meanflow_loss`][interpolant_rl.objectives.meanflow_loss],
   [`meanflow_one_step`][interpolant_rl.meanflow_one_step]); the MeanFlow term draws
   its time pairs and weights its errors by the `meanflow_preset`
   ([`meanflow_preset`][interpolant_rl.objectives.meanflow_preset]); $\theta^- \leftarrow$ EMA.
3. **Act.** $a = \operatorname{clip}(z + u_\theta(z, 0, 1), -1, 1)$.

**Choices and why** (measured on the exact-tilt problems of `experiments/toy_tilt.py`; figures
in `benchmarks/results/fidelity_moma_ofql.md`):

- *MeanFlow preset `"imagenet"`* (25 % of pairs with $t \ne s$, logit-normal $(0.4, 1)$ in this
  time direction, adaptive-weight power $p = 1$). The former default mixed the two published
  settings (CIFAR-10's 75 % of $t \ne s$ pairs with ImageNet's time law and power). Both presets
  were measured on the three exact-tilt problems (3000 updates, $\eta = 0.01$): the ImageNet one
  moved Q further on all three and came closer to the tilt on two (sliced $W_2$ 0.128 against
  0.257 on `unimodal_linear`, 0.357 against 0.370 on `bimodal`, 0.109 against 0.101 on
  `anisotropic_4d`); CIFAR-10's keeps more spread (smallest-eigenvalue ratio 0.79–0.85 against
  0.39–0.79) but hardly improves Q (on `bimodal` not at all); `meanflow_preset="cifar10"`
  selects the other, and `equal_time_fraction` / `adaptive_weight_power` override one field.
- *Per-dimension errors.* The adaptive weight $1/\mathrm{sg}(e + \epsilon)^p$ is applied to the
  squared error averaged over the action's dimensions (as the flow-matching loss), so it does not
  depend on the action dimension (MeanFlow sums over pixels, where $\epsilon$ then means
  something different for every image size).
- *$\eta$*: the default is 1, Diffusion-QL's Gym-locomotion value (the template this seed
  follows; its own values are not public). It is too strong for the exact-tilt problems, where
  0.01 is what keeps the policy regularised. Why the policy collapsed at $\eta = 1$ (onto the critic's maximiser,
  sliced $W_2$ 0.50 to the tilt on `bimodal`): the MeanFlow term barely restrains the one-step
  map. If $u$ is the exact average velocity of some field $w$, the regression error is
  $u_{\text{tgt}} - u = \partial_x\Phi_{t\to s}\,(v - w)$, the velocity error seen through the
  Jacobian of the flow map $\Phi_{t\to s} = x + (s - t)u$: a one-step map that contracts toward a
  point makes the loss blind to it, and the data enter only near the diagonal $s \approx t$, where
  $\partial_x\Phi \approx I$. Pairs near the one-step corner are rare ($t < 0.1$, $s > 0.9$:
  0.008 % of the pairs with the ImageNet preset, 1.2 % with CIFAR-10's), and the normalised Q term pulls with $\eta\,\|\nabla_a
  Q\|/\mathrm{mean}|Q|$, large when $Q$ is centred near 0 as in these problems. Measured: the
  MeanFlow loss at $\eta = 1$ (collapsed policy) equals its value at $\eta = 0$; at
  $\eta = 0.03$ the policy is regularised after 1000 updates but drifts off the support of
  `unimodal_linear` by 3000; at $\eta = 0.01$ it keeps its covariance and raises Q on all three
  problems, with 86 % of the samples of `anisotropic_4d` inside the behaviour's 99 % ellipsoid
  (the exact tilt: 98 %); at 0.007 it passes every check on all three (support ≥ 96 %), but
  its gain in Q on `bimodal` is nil there (−0.164 against the behaviour's −0.165) and negative
  below (`benchmarks/fidelity_moma_ofql.py --sweep`). A Diffusion-QL-style reference (flow
  matching + the Q term through a 10-step ODE) also leaves the support at $\eta = 1$ on
  `unimodal_linear` and `anisotropic_4d`. Re-tune $\eta$ per domain as Diffusion-QL does
  (0.005–4.5); OFQL's own values are not public (no code).
"""

import dataclasses

import jax
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from .._jump_sampling import meanflow_one_step
from ..nn import ema_update, TwoTimeField
from ..objectives import meanflow_loss, meanflow_preset, normalised_q_loss
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._optim import adam, Trained
from ._policies import NoisePolicy


@dataclasses.dataclass(frozen=True)
class OFQLConfig(Hyperparameters):
    """OFQL hyperparameters; the module docstring gives the reasons for each default."""

    eta: float = (
        1.0  # weight of the normalised Q term (Diffusion-QL's Gym value; 0.005-4.5 by domain)
    )
    meanflow_preset: str = "imagenet"  # MeanFlow's time law and weighting: "imagenet" / "cifar10"
    equal_time_fraction: float | None = None  # fraction of pairs with s = t; None: the preset's
    adaptive_weight_power: float | None = None  # p of the weight 1/sg(e + c)^p; None: the preset's
    target_rate: float = 0.005  # EMA rate of the target policy (Diffusion-QL: 0.995 decay)
    actor: NetworkConfig = NetworkConfig()  # the average-velocity field u(t, s, x | s)
    critic: CriticConfig = CriticConfig(num_critics=2, rho=1.0)  # double Q, min target
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # global-norm clipping of the actor (off)

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        meanflow_preset(self.meanflow_preset)
        if self.equal_time_fraction is not None and not 0.0 <= self.equal_time_fraction <= 1.0:
            raise ValueError(
                f"equal_time_fraction must lie in [0, 1], got {self.equal_time_fraction}"
            )


def _one_step_policy(field: TwoTimeField) -> NoisePolicy:
    """$a = \\operatorname{clip}(z + u(z, 0, 1 \\mid s), -1, 1)$: one MeanFlow jump from noise."""
    return NoisePolicy(jax.tree_util.Partial(meanflow_one_step, field), field.action_dim)


class OFQL(AbstractAgent):
    """OFQL: see the module docstring for the algorithm."""

    field: Trained
    target_field: TwoTimeField
    critic: AbstractCritic
    config: OFQLConfig

    def actor_step(self, batch, key):
        config = self.config
        mf_key, q_key = jr.split(key)
        settings = meanflow_preset(config.meanflow_preset).loss_kwargs()
        if config.equal_time_fraction is not None:
            settings["equal_time_fraction"] = config.equal_time_fraction
        if config.adaptive_weight_power is not None:
            settings["adaptive_weight_power"] = config.adaptive_weight_power

        def loss_fn(field):
            mf = meanflow_loss(
                LinearInterpolant(),
                field,
                batch.actions,
                batch.observations,
                mf_key,
                weights=batch.valid,
                **settings,
            )
            actions = _one_step_policy(field)(batch.observations, q_key)
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, actions))
            return mf + config.eta * q_loss, dict(meanflow_loss=mf, q_loss=q_loss)

        field, metrics = self.field.minimise(loss_fn)
        target_field = ema_update(self.target_field, field.model, config.target_rate)
        return OFQL(field, target_field, self.critic, config), metrics

    def acting_policy(self):
        return _one_step_policy(self.field.model)

    def target_policy(self, observations, key):
        return _one_step_policy(self.target_field)(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: OFQLConfig = OFQLConfig()
) -> OFQL:
    """A fresh OFQL agent."""
    field_key, critic_key = jr.split(key)
    field = build_network(TwoTimeField, action_dim, obs_dim, config.actor, field_key)
    return OFQL(
        Trained.create(field, adam(config.learning_rate, config.grad_clip)),
        field,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
