r"""Prior Guidance's latent objective: a learned prior over a fixed flow's noise, trained to
raise the critic of the decoded actions while staying close to the flow's own prior."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Scalar, ScalarLike
from ..nn import GaussianLatentPrior
from ._q_term import normalised_q_loss


def latent_prior_loss(
    prior: GaussianLatentPrior,
    decode: Callable[[Float[Array, "batch obs_dim"], Float[Array, "batch dim"]], Array],
    q_function: Callable[[Float[Array, "batch obs_dim"], Float[Array, "batch dim"]], Array],
    observations: Float[Array, "batch obs_dim"],
    noise: Float[Array, "batch dim"],
    tau: ScalarLike,
    *,
    normalise_q: bool = False,
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""The behaviour-regularised latent objective of Prior Guidance (PG), to minimise:

    $$\mathcal L(\psi) = -\operatorname{mean}_i Q\big(s_i, T_{s_i}(z_i)\big)
      + \frac1\tau\operatorname{mean}_i \mathrm{KL}\big(q_\psi(\cdot \mid s_i)\,\|\,\mathcal N(0, I)\big),
      \qquad z_i = \mu_\psi(s_i) + L_\psi(s_i)\,\varepsilon_i,$$

    with $T_s$ = `decode` the fixed flow map from noise ($t = 0$) to action ($t = 1$), the KL
    in closed form ([`GaussianLatentPrior.kl_to_standard`][interpolant_rl.nn.GaussianLatentPrior.kl_to_standard])
    and the Q term differentiated pathwise, through $z$ and $T_s$, into $\psi$ only (neither the
    flow nor the critic is trained by it: the caller differentiates with respect to the prior).
    $1/\tau$ is the PG paper's $\alpha$. Over all distributions $q$ the minimiser is
    $q^*(z \mid s) \propto \mathcal N(z; 0, I)\,e^{\tau Q(s, T_s(z))}$, whose push-forward
    through $T_s$ is the tilt $\pi_\beta(a \mid s)\,e^{\tau Q(s, a)}$ (see
    [`interpolant_rl.agents.prior_guidance`][]).

    **Arguments:**

    - `prior`: the [`GaussianLatentPrior`][interpolant_rl.nn.GaussianLatentPrior] being trained.
    - `decode`: `(observations, noise) -> actions`, the fixed flow map $T_s$ on a batch (e.g.
      [`FlowPolicy.from_noise`][interpolant_rl.agents.FlowPolicy.from_noise]).
    - `q_function`: `(observations, actions) -> values` of shape `(batch,)` (e.g. an ensemble
      mean).
    - `observations`, `noise`: the states $s_i$ and standard normal draws $\varepsilon_i$.
    - `tau`: the inverse temperature $\tau > 0$.
    - `normalise_q`: divide the Q term by $\mathrm{sg}\,\operatorname{mean}|Q|$
      ([`normalised_q_loss`][interpolant_rl.objectives.normalised_q_loss]); the effective
      inverse temperature then becomes $\tau/\operatorname{mean}|Q|$.

    **Returns:** `(loss, metrics)` with metrics `prior_q` (the mean $Q$ of the decoded actions)
    and `prior_kl` (the mean KL).
    """
    latents = jax.vmap(prior.sample)(observations, noise)
    q = q_function(observations, decode(observations, latents))
    q_term = normalised_q_loss(q) if normalise_q else -jnp.mean(q)
    kl = jnp.mean(jax.vmap(prior.kl_to_standard)(observations))
    return q_term + kl / tau, dict(prior_q=jnp.mean(q), prior_kl=kl)
