r"""Prior Guidance (PG): a learned prior over the noise of a fixed behaviour flow.

Ki, Oh, Shim and Lee, *Prior-Guided Diffusion Planning for Offline Reinforcement Learning*
(arXiv:2505.10881, 2025). The behaviour-cloned generative model is never fine-tuned by the RL
objective; what changes is the distribution its noise is drawn from. With $T_s$ the behaviour
flow's map from noise ($t = 0$) to action ($t = 1$), here
$T_s(z) = \operatorname{clip}(\mathrm{ODE}_{f_\beta}(s, z), -1, 1)$ (`flow_steps` Euler steps), and
$q_\psi(z \mid s) = \mathcal N(\mu_\psi(s), L_\psi(s) L_\psi(s)^\top)$ a
[`GaussianLatentPrior`][interpolant_rl.nn.GaussianLatentPrior], per update on a batch
$(s, a, r, m, s')$:

1. **Critic.** TD of the [`LearnedCritic`][interpolant_rl.agents.LearnedCritic] with
   $a' = T_{s'}(z')$, $z' \sim q_\psi(\cdot \mid s')$: the PG policy's own next actions.
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on $(s, a)$ — its only
   training signal, ever.
3. **Prior.** $\psi \leftarrow$ one step on
   ([`latent_prior_loss`][interpolant_rl.objectives.latent_prior_loss])
   $$\mathcal L(\psi) = -\operatorname{mean}_i \bar Q\big(s_i, T_{s_i}(\mu_\psi(s_i) + L_\psi(s_i)\varepsilon_i)\big)
     + \tfrac1\tau\operatorname{mean}_i\mathrm{KL}\big(q_\psi(\cdot \mid s_i)\,\|\,\mathcal N(0, I)\big),$$
   $\varepsilon_i \sim \mathcal N(0, I)$, differentiated through the (fixed) flow into $\psi$
   only; skipped during the first `prior_delay` updates.
4. **Act.** $a = T_s(z)$, $z \sim q_\psi(\cdot \mid s)$: one prior draw, one ODE solve, no
   best-of-$N$ ([`LatentNoisePolicy`][interpolant_rl.agents.LatentNoisePolicy]).

**Why this is the tilt.** $T_s$ is the time-1 map of an ODE, hence invertible, and pushes
$\mathcal N(0, I)$ to the behaviour policy $\pi_\beta(\cdot \mid s)$ (exactly so for the exact
velocity; up to the behaviour-cloning and discretisation errors in practice). For any latent
density $q$, the Gibbs variational identity gives

$$\mathbb E_{q}\big[Q(s, T_s(z))\big] - \tfrac1\tau\mathrm{KL}\big(q\,\|\,\mathcal N(0, I)\big)
  = \tfrac1\tau\log Z(s) - \tfrac1\tau\mathrm{KL}\big(q\,\|\,q^*\big),\qquad
  q^*(z \mid s) = \frac{\mathcal N(z; 0, I)\,e^{\tau Q(s, T_s(z))}}{Z(s)},$$

so $-\mathcal L$ is maximised by $q^*$ (the KL to $q^*$ vanishes) and nothing else. Its
push-forward: with $a = T_s(z)$, the change of variables
$\pi_\beta(a \mid s) = \mathcal N(T_s^{-1}(a); 0, I)\,|\det \partial_a T_s^{-1}(a)|$ gives

$$(T_s)_\# q^*(a \mid s) = q^*(T_s^{-1}(a) \mid s)\,|\det\partial_a T_s^{-1}(a)|
  = \frac{\pi_\beta(a \mid s)\,e^{\tau Q(s, a)}}{Z(s)},\qquad
  Z(s) = \mathbb E_{\pi_\beta}\big[e^{\tau Q(s, a)}\big],$$

exactly the tilt $\pi^* \propto \pi_\beta e^{\tau Q}$ of every behaviour-regularised agent in the
library. Equivalently, the KL is invariant under the invertible $T_s$,
$\mathrm{KL}(q\,\|\,\mathcal N) = \mathrm{KL}((T_s)_\# q\,\|\,\pi_\beta)$, so the latent problem *is*
the action-space problem $\max_\pi \mathbb E_\pi Q - \frac1\tau\mathrm{KL}(\pi\,\|\,\pi_\beta)$, with
the density ratio to $\pi_\beta$ (which the action space would need) replaced by a closed-form
Gaussian KL. The paper's regularisation weight $\alpha$ is $1/\tau$. A Gaussian $q_\psi$ reaches
$q^*$ when $q^*$ is Gaussian — an affine $T_s$ (Gaussian behaviour) and a quadratic $Q$, the
closed form tested in `tests/test_prior_guidance.py` — and otherwise its reverse-KL projection
on the Gaussians (for a multimodal behaviour $T_s$ folds $\mathcal N(0, I)$ into the modes, and
$q^*$ is a Gaussian reweighted region by region).

**Trajectory planners.** Nothing above uses that $T_s$ produces one action: PG's paper applies
it to a diffusion *planner*, whose sample $x_1 = (s_0, a_0, s_1, a_1, \dots, s_H)$ is a
trajectory from noise of the trajectory's shape, conditioned on the current state. There the
learned prior is over the trajectory noise, $Q(s, T_s(z))$ becomes a value of the decoded
trajectory (its discounted reward sum plus a terminal value, or a learned value of the plan),
and the optimal prior pushes forward to the tilted trajectory distribution
$p_\beta(\text{traj} \mid s)\,e^{\tau R(\text{traj})}$; the agent executes the plan's first action (or
an inverse-dynamics model's action between its first two states) and replans. In this library
an action chunk ($h$ actions flattened, `CriticConfig.horizon = h`) already makes $T_s$ a planner
of $h$ open-loop actions, so the same agent is the planner form with actions-only plans.

**Decisions** (see the agents guide's Fidelity table): the behaviour flow and the prior train
*concurrently* from the first update by default (`prior_delay = 0`, ours), like FQL's one-step
policy: the flow's loss never sees the prior, so this differs from the paper's two phases (flow
pretrained, then frozen) only in that early prior steps chase a moving $T_s$; `prior_delay = N`
gives the paper's schedule within one run (flow matching alone for $N$ updates; the flow keeps
its flow-matching steps afterwards, which only refine the behaviour model). The Q term is
differentiated pathwise through the flow's ODE; the PG code instead regresses a latent critic
$Q_z(s, z) \approx Q(s, T_s(z))$ and climbs that (as [`dsrl`][interpolant_rl.agents.dsrl] does),
which avoids backpropagation through the sampler at the price of a second approximation. The
PG code squashes its prior samples with $2\tanh(\cdot)$ and uses a diagonal covariance; both
would make $q^*$ unreachable on the closed-form problems, so the prior here is an unsquashed
Gaussian with a full covariance by default.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..nn import GaussianLatentPrior, VelocityField
from ..objectives import latent_prior_loss
from ._agent import AbstractAgent, AbstractPolicy
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import flow_matching_step, FlowPolicy, LatentNoisePolicy
from ._optim import adam, Trained


@dataclasses.dataclass(frozen=True)
class PriorGuidanceConfig(Hyperparameters):
    """Prior Guidance hyperparameters. "PG code": the authors' public code (ku-dmlab/PG, its
    D4RL MuJoCo script's defaults); "ours": chosen here (the paper's per-task values were not
    verified)."""

    tau: float = 1.0  # inverse temperature; the paper's KL weight alpha = 1/tau (PG code: alpha 1)
    flow_steps: int = 10  # Euler steps of the noise-to-action map T_s (ours: the library's flows)
    full_covariance: bool = True  # lower-triangular prior scale (ours; PG code: diagonal)
    normalise_q: bool = False  # divide the Q term by sg(mean|Q|) (ours; PG code: on)
    prior_delay: int = 0  # flow-matching-only updates before the prior trains (ours: concurrent)
    actor: NetworkConfig = NetworkConfig()  # behaviour flow and prior network: 4x512 GELU (ours)
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5 (the library's critic)
    learning_rate: float = 3e-4  # Adam step size of the behaviour flow (the library's flows)
    prior_learning_rate: float = 1e-3  # Adam step size of the prior (ours; PG code: 3e-4)
    grad_clip: float | None = None  # no gradient clipping (PG code: none)

    def __post_init__(self):
        check_positive("tau", self.tau)
        check_positive("flow_steps", self.flow_steps)
        check_positive("prior_delay", self.prior_delay, allow_zero=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("prior_learning_rate", self.prior_learning_rate)


class GaussianPriorPolicy(AbstractPolicy):
    r"""Draws of the latent prior, $z = \mu_\psi(s) + L_\psi(s)\varepsilon$ (the "actions" of
    PG's noise policy, decoded by the flow in a
    [`LatentNoisePolicy`][interpolant_rl.agents.LatentNoisePolicy]).

    **Fields:** `prior` (a [`GaussianLatentPrior`][interpolant_rl.nn.GaussianLatentPrior]).
    """

    prior: GaussianLatentPrior

    def __call__(self, observations, key):
        noise = jr.normal(key, (observations.shape[0], self.prior.noise_dim))
        return jax.vmap(self.prior.sample)(observations, noise)


class PriorGuidance(AbstractAgent):
    """Prior Guidance: see the module docstring for the algorithm.

    **Fields:** `behaviour` (the `Trained` flow $f_\\beta$), `prior` (a `Trained`
    [`GaussianLatentPrior`][interpolant_rl.nn.GaussianLatentPrior]), `critic`, `updates` (the
    number of updates so far, for `prior_delay`), `config` (static).
    """

    behaviour: Trained
    prior: Trained
    critic: AbstractCritic
    updates: Int[Array, ""]
    config: PriorGuidanceConfig

    def flow_policy(self) -> FlowPolicy:
        """$T_s$: the behaviour flow as a (clipped) map from noise to action."""
        flow = self.behaviour.model
        return FlowPolicy(flow, flow.action_dim, self.config.flow_steps)

    def decode(
        self, observations: Float[Array, "batch obs_dim"], latents: Float[Array, "batch dim"]
    ) -> Float[Array, "batch dim"]:
        r"""$T_s(z) = \operatorname{clip}(\mathrm{ODE}_{f_\beta}(s, z), -1, 1)$."""
        return self.flow_policy().from_noise(observations, latents)

    def actor_step(self, batch, key):
        bc_key, prior_key = jr.split(key)
        config = self.config

        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, bc_key)
        decode = dataclasses.replace(self, behaviour=behaviour).decode  # T_s: fixed below

        noise = jr.normal(prior_key, batch.actions.shape)

        def loss_fn(prior):
            return latent_prior_loss(
                prior,
                decode,
                self.critic.mean_values,
                batch.observations,
                noise,
                config.tau,
                normalise_q=config.normalise_q,
            )

        prior, metrics = self.prior.minimise(loss_fn)
        if config.prior_delay > 0:  # static: the paper's two phases within one run
            train = self.updates >= config.prior_delay
            new, static = eqx.partition(prior, eqx.is_array)
            old = eqx.filter(self.prior, eqx.is_array)
            prior = eqx.combine(jax.tree.map(lambda n, o: jnp.where(train, n, o), new, old), static)
        agent = dataclasses.replace(
            self, behaviour=behaviour, prior=prior, updates=self.updates + 1
        )
        return agent, dict(flow_matching_loss=bc_loss, **metrics)

    def acting_policy(self):
        """$a = T_s(z)$, $z \\sim q_\\psi(\\cdot \\mid s)$."""
        return LatentNoisePolicy(GaussianPriorPolicy(self.prior.model), self.flow_policy())


def create(
    obs_dim: int,
    action_dim: int,
    key: PRNGKeyArray,
    config: PriorGuidanceConfig = PriorGuidanceConfig(),
) -> PriorGuidance:
    """A fresh Prior Guidance agent; its prior starts at $\\mathcal N(0, I)$ (behaviour cloning)."""
    flow_key, prior_key, critic_key = jr.split(key, 3)
    net = config.actor
    optimiser = adam(config.learning_rate, config.grad_clip)
    prior_optimiser = adam(config.prior_learning_rate, config.grad_clip)
    behaviour = build_network(VelocityField, action_dim, obs_dim, net, flow_key)
    prior = GaussianLatentPrior(
        action_dim,
        obs_dim,
        net.width,
        net.depth,
        full_covariance=config.full_covariance,
        layer_norm=net.layer_norm,
        key=prior_key,
    )
    return PriorGuidance(
        Trained.create(behaviour, optimiser),
        Trained.create(prior, prior_optimiser),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        jnp.zeros((), jnp.int32),
        config,
    )
