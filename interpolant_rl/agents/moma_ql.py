r"""MoMa QL — moment-matching Q-learning with a one-jump (or few-jump) sampler.

Algorithm box, per update on a batch of $B$ state–action pairs $(c_b, a_b)$:

1. **Critic.** TD (double Q: $K = 2$, $\rho = 1$ gives the minimum of the two) with
   $a' = \operatorname{clip}(f_{\theta^-}(z; 0 \to 1))$ from the EMA sampler.
2. **Actor.** One step on
   $\mathcal L_{\text{MMD}}(\theta) + \eta\,\big(-Q(c, a_\pi)/\mathrm{sg}\,\mathrm{mean}|Q|\big)$
   ([`moment_matching_loss`][interpolant_rl.objectives.moment_matching_loss]):
   - one group per state $c_b$, with its own times $(t, r, s)$: $M$ online particles
     $x_t^i = \alpha_t a_b + \beta_t\varepsilon_i$ and $M$ target particles
     $x_r^j = \alpha_r a_b + \beta_r\varepsilon'_j$, all noises independent;
   - $\mathcal L_{\text{MMD}} = \frac1B\sum_b \widehat{\mathrm{MMD}}{}^2_U\big(
     \{f_\theta(x_t^i; t\to s)\}, \{\mathrm{sg}\,f_{\theta^-}(x_r^j; r\to s)\}\big)$, RBF kernel
     with the group's median pairwise distance as bandwidth (under stop-gradient);
   - the jump field is preconditioned, $G = c_{\text{skip}}(t)\,x + c_{\text{out}}(t)\,F_\theta$
     ([`PreconditionedJump`][interpolant_rl.nn.PreconditionedJump]);
   - $a_\pi$ from `num_jumps` jumps of the online sampler
     ([`multi_jump_sample`][interpolant_rl.multi_jump_sample]);
     $\theta^- \leftarrow$ EMA of $\theta$.
3. **Act.** $a = \operatorname{clip}(f_\theta(z; 0 \to 1), -1, 1)$ in `num_jumps` evaluations.

**Choices and why** (measured on the exact-tilt problems of `experiments/toy_tilt.py`; figures
in `benchmarks/results/fidelity_moma_ofql.md`). Before these choices the policy collapsed onto the
critic's maximiser (sliced $W_2$ 0.50 to the tilt on `bimodal`, worse than the untilted
behaviour flow's 0.31); it did so even at $\eta = 0$, so the behaviour-cloning term itself was
broken:

- *Groups of one state* (the seed's MMD compares two distributions for one state). Offline data
  has one action per state, so a group is that action interpolated with $M$ independent noises;
  pooling $M$ rows of different states (the former construction) compared action marginals across
  states and mostly pulled each particle toward its partner. The target particles get their own
  noises, so the two sets are independent given the action and the U-statistic (the seed's
  unbiased estimator) is unbiased; at $t = 0$, the sampler's start, the loss is the per-state MMD
  plus a constant (the derivation is in `moment_matching_loss`). `unbiased=False` (V-statistic)
  and `shared_noise=True` (inductive moment matching's pairs) remain available.
- *Median bandwidth per group* (the seed's adaptive bandwidth): the median of the group's $2M$
  pooled pairwise distances, so the kernel follows the actions' scale and dimension; pooling the
  target's jumps keeps it at the data's spread when the online jumps collapse.
  `bandwidth="sqrt_dim"` is the former fixed rule.
- *Preconditioned jump field* ($\sigma_d = 0.5$, EDM's value for actions in $[-1, 1]$, the
  seed's sampler scale). Without it the jump to $s = 1$ is the raw network's output (the DDIM skip
  term vanishes with $\beta_1 = 0$), and a constant field is a zero-loss fixed point of the
  self-distilled target: at $\eta = 0$ the one-jump policy collapsed to a point (both covariance
  eigenvalues 0 after 1000 updates).
- *The sampler's own jump*, `grid_fraction = 0.5`: the Q term moves $f_\theta(\cdot; 0\to 1)$,
  which uniform times almost never train ($P(t < 0.05, s > 0.95) \approx 0.25\,\%$); half of the
  groups are drawn on the grid $k/K \to (k+1)/K$ of the sampler.
- *A data-anchored target*, `gap = 0.9`: with $r$ a small step from $t$ ($\gamma = 0.1$, inductive
  moment matching) the loss is mostly self-consistency of the EMA copy, which the Q term drags
  along, and the policy lost its spread even at $\eta = 0.03$; with the target's jump the last
  10 % of $t \to s$, its set is close to the data's interpolant $x_s$ ($\gamma = 1$ makes it
  exactly that).
- *$\eta$*: the default is 1, Diffusion-QL's Gym-locomotion value (the template this seed
  follows; its own values are not public). It is too strong for the exact-tilt problems, where
  0.01 is what keeps the policy regularised: the MMD restrains the one-jump map far less than Diffusion-QL's
  $\varepsilon$-loss restrains its chain (its force on a particle is bounded and fades with
  distance), and the normalised Q term's pull is $\eta\,\|\nabla_a Q\|/\mathrm{mean}|Q|$, large
  where $Q$ is centred near 0 as in these problems. At $\eta = 1$ (Diffusion-QL's Gym value) the
  policy still collapses (smallest covariance eigenvalue at most 0.12 % of the behaviour's on all
  three problems); at $\eta = 0.03$ it stretches along $\nabla Q$ and leaves the support of
  `unimodal_linear` (85 % of the samples within 3 behaviour standard deviations); at 0.01 it
  keeps its covariance and raises Q on all three, with 88 % of the samples of `anisotropic_4d`
  inside the behaviour's 99 % ellipsoid (the exact tilt: 98 %); at 0.007 and 0.005 it passes
  every check on all three (covariance, support ≥ 92 %, higher Q;
  `benchmarks/fidelity_moma_ofql.py --sweep`). Re-tune $\eta$ per domain as
  Diffusion-QL does (0.005–4.5); MoMa QL's own values are not public (no code).
"""

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from .._jump_sampling import multi_jump_sample
from .._kernels import LaplaceKernel, RBFKernel
from ..nn import ema_update, PreconditionedJump, TwoTimeField
from ..objectives import (
    ConstantBandwidth,
    MedianBandwidth,
    moment_matching_loss,
    normalised_q_loss,
    UniformJumpTimes,
)
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._optim import adam, Trained
from ._policies import NoisePolicy


@dataclasses.dataclass(frozen=True)
class MoMaQLConfig(Hyperparameters):
    """MoMa QL hyperparameters; the module docstring gives the reasons for each default."""

    eta: float = (
        1.0  # weight of the normalised Q term (Diffusion-QL's Gym value; 0.005-4.5 by domain)
    )
    particles: int = 4  # M noises per state: the group's particles (inductive moment matching: 4)
    num_jumps: int = 1  # jumps from noise to action, for acting and for the Q term
    gap: float = 0.9  # r = t + gap * (s - t): the target's jump is the last 10 % of t -> s
    grid_fraction: float = 0.5  # groups drawn on the sampler's own jumps (k/K -> (k+1)/K)
    sigma_data: float | None = 0.5  # preconditioning of the jump field (None: the raw network)
    laplace_kernel: bool = False  # Laplace kernel (inductive moment matching) instead of RBF
    unbiased: bool = True  # U-statistic (the seed); False: V-statistic (inductive moment matching)
    bandwidth: str | float = "median"  # per-group median heuristic, "sqrt_dim", or a fixed value
    shared_noise: bool = False  # x_r from the same noises as x_t (IMM's pairs: dependent sets)
    target_rate: float = 0.005  # EMA rate of the target sampler (Diffusion-QL: 0.995 decay)
    actor: NetworkConfig = NetworkConfig()  # the jump field G(t, s, x | s)
    critic: CriticConfig = CriticConfig(num_critics=2, rho=1.0)  # double Q, min target
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # global-norm clipping of the actor (off)

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("particles", self.particles)
        check_positive("num_jumps", self.num_jumps)
        if self.unbiased and self.particles < 2:
            raise ValueError("the unbiased MMD needs particles >= 2")
        if self.sigma_data is not None:
            check_positive("sigma_data", self.sigma_data)
        if isinstance(self.bandwidth, str):
            if self.bandwidth not in ("median", "sqrt_dim"):
                raise ValueError(
                    f"bandwidth must be 'median', 'sqrt_dim' or a number, got {self.bandwidth!r}"
                )
        else:
            check_positive("bandwidth", self.bandwidth)
        UniformJumpTimes(self.gap, grid_fraction=self.grid_fraction, num_jumps=self.num_jumps)


class MultiJumpSampler(eqx.Module):
    """`(z, s) -> a`: `num_jumps` jumps of a jump field from $t = 0$ to $1$
    ([`multi_jump_sample`][interpolant_rl.multi_jump_sample])."""

    field: Callable
    num_jumps: int = eqx.field(static=True)

    def __call__(self, noise, cond):
        return multi_jump_sample(LinearInterpolant(), self.field, noise, cond, self.num_jumps)


class MoMaQL(AbstractAgent):
    """MoMa QL: see the module docstring for the algorithm."""

    field: Trained
    target_field: TwoTimeField
    critic: AbstractCritic
    config: MoMaQLConfig

    def _jump_field(self, network):
        if self.config.sigma_data is None:
            return network
        return PreconditionedJump(LinearInterpolant(), network, self.config.sigma_data)

    def _policy(self, field) -> NoisePolicy:
        """$a = \\operatorname{clip}(\\cdot, -1, 1)$ of `num_jumps` jumps of `field` from noise."""
        sampler = MultiJumpSampler(self._jump_field(field), self.config.num_jumps)
        return NoisePolicy(sampler, field.action_dim)

    def actor_step(self, batch, key):
        config = self.config
        mmd_key, q_key = jr.split(key)
        action_dim = batch.actions.shape[-1]
        kernel = LaplaceKernel if config.laplace_kernel else RBFKernel
        if config.bandwidth == "median":
            bandwidth = MedianBandwidth()
        elif config.bandwidth == "sqrt_dim":
            bandwidth = ConstantBandwidth(math.sqrt(action_dim))
        else:
            bandwidth = ConstantBandwidth(float(config.bandwidth))

        def loss_fn(field):
            mmd = moment_matching_loss(
                LinearInterpolant(),
                self._jump_field(field),
                self._jump_field(self.target_field),
                batch.actions[:, None],
                batch.observations,
                mmd_key,
                noises=config.particles,
                times=UniformJumpTimes(
                    config.gap, grid_fraction=config.grid_fraction, num_jumps=config.num_jumps
                ),
                kernel=kernel,
                bandwidth=bandwidth,
                unbiased=config.unbiased,
                shared_noise=config.shared_noise,
                weights=batch.valid,
            )
            policy_actions = self._policy(field)(batch.observations, q_key)
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, policy_actions))
            return mmd + config.eta * q_loss, dict(mmd_loss=mmd, q_loss=q_loss)

        field, metrics = self.field.minimise(loss_fn)
        target_field = ema_update(self.target_field, field.model, config.target_rate)
        return MoMaQL(field, target_field, self.critic, config), metrics

    def acting_policy(self):
        return self._policy(self.field.model)

    def target_policy(self, observations, key):
        return self._policy(self.target_field)(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: MoMaQLConfig = MoMaQLConfig()
) -> MoMaQL:
    """A fresh MoMa QL agent."""
    field_key, critic_key = jr.split(key)
    field = build_network(TwoTimeField, action_dim, obs_dim, config.actor, field_key)
    return MoMaQL(
        Trained.create(field, adam(config.learning_rate, config.grad_clip)),
        field,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
