r"""A tanh-squashed Gaussian policy with an exact log-density."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Scalar
from ._mlp import MLP


def _log_tanh_jacobian(u: Float[Array, " dim"]) -> Float[Array, " dim"]:
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for every u.
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def _inside_unit_box(a: Float[Array, " dim"]) -> Float[Array, " dim"]:
    # tanh rounds to exactly +-1 for |u| >~ 9 in float32: keep actions strictly inside (-1, 1).
    bound = jnp.nextafter(jnp.asarray(1.0, a.dtype), jnp.asarray(0.0, a.dtype))
    return jnp.clip(a, -bound, bound)


class TanhGaussianPolicy(eqx.Module):
    r"""A tanh-squashed diagonal Gaussian policy (SAC / RLPD style):

    $$u \sim \mathcal N\big(\mu(\text{cond}), \operatorname{diag}\sigma(\text{cond})^2\big),
      \qquad a = \tanh(u) \in (-1, 1)^d,$$

    with $(\mu, \log\sigma)$ = `MLP(cond)` and $\log\sigma$ clipped to
    `[log_std_min, log_std_max]`. Its log-density is the exact change of variables

    $$\log\pi(a \mid \text{cond}) = \sum_i \Big[\log\mathcal N(u_i; \mu_i, \sigma_i^2)
      - \log(1 - \tanh^2 u_i)\Big],\qquad
      \log(1 - \tanh^2 u) = 2\big(\log 2 - u - \operatorname{softplus}(-2u)\big),$$

    where the right-hand form is numerically stable for every $u$.

    The input `cond` is the observation, or any vector of size `obs_dim` (e.g. an observation
    concatenated with something else); `obs_dim` must be at least 1.

    **Fields:** `mlp`, `action_dim`, `obs_dim`, `log_std_min`, `log_std_max`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the action dimension $d$.
        - `obs_dim`: the dimension of the input `cond` ($\ge 1$).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][].
        - `log_std_min`, `log_std_max`: the clipping range of $\log\sigma$.
        - `key`: a JAX PRNG key.
        """
        if obs_dim < 1:
            raise ValueError(
                f"TanhGaussianPolicy needs an input: obs_dim >= 1, got obs_dim={obs_dim}"
            )
        if not log_std_min < log_std_max:
            raise ValueError(
                "TanhGaussianPolicy needs log_std_min < log_std_max, got "
                f"{log_std_min} and {log_std_max}"
            )
        self.mlp = MLP(obs_dim, 2 * action_dim, width, depth, layer_norm=layer_norm, key=key)
        self.action_dim = action_dim
        self.obs_dim = obs_dim
        self.log_std_min = float(log_std_min)
        self.log_std_max = float(log_std_max)

    def __call__(
        self, cond: Float[Array, " obs_dim"]
    ) -> tuple[Float[Array, " action_dim"], Float[Array, " action_dim"]]:
        r"""**Arguments:** `cond`, shape `(obs_dim,)`.

        **Returns:** `(mean, log_std)` of the Gaussian before the squashing, each of shape
        `(action_dim,)`, with `log_std` clipped to `[log_std_min, log_std_max]`.
        """
        if jnp.shape(cond) != (self.obs_dim,):
            raise ValueError(
                f"TanhGaussianPolicy expects cond of shape ({self.obs_dim},), got "
                f"{jnp.shape(cond)} (networks act on one sample: use jax.vmap for batches)"
            )
        out = self.mlp(cond)
        mean, log_std = out[: self.action_dim], out[self.action_dim :]
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)

    def sample_and_log_prob(
        self, cond: Float[Array, " obs_dim"], key: PRNGKeyArray
    ) -> tuple[Float[Array, " action_dim"], Scalar]:
        r"""Draw $a = \tanh(\mu + \sigma\varepsilon)$, $\varepsilon \sim \mathcal N(0, I)$
        (reparameterised: differentiable in the parameters), with its log-density.

        **Arguments:** `cond` (shape `(obs_dim,)`) and a PRNG `key`.

        **Returns:** `(action, log_prob)`: the action, strictly inside $(-1, 1)^d$, and
        $\log\pi(a \mid \text{cond})$ computed from $u$ (never from $\operatorname{atanh} a$).
        """
        mean, log_std = self(cond)
        eps = jr.normal(key, mean.shape, mean.dtype)
        u = mean + jnp.exp(log_std) * eps
        log_gaussian = -0.5 * eps**2 - log_std - 0.5 * math.log(2.0 * math.pi)
        log_prob = jnp.sum(log_gaussian - _log_tanh_jacobian(u))
        return _inside_unit_box(jnp.tanh(u)), log_prob

    def log_prob(
        self,
        cond: Float[Array, " obs_dim"],
        action: Float[Array, " action_dim"],
        *,
        epsilon: float = 1e-6,
    ) -> Scalar:
        r"""$\log\pi(a \mid \text{cond})$ of a given action (e.g. a dataset action for behaviour
        cloning), through $u = \operatorname{atanh}(a)$.

        **Arguments:** `cond` (shape `(obs_dim,)`), `action` (shape `(action_dim,)`), and
        `epsilon`: the action is first clipped to $[-1 + \epsilon, 1 - \epsilon]$, so that actions
        on the boundary of the box have a finite log-density.

        **Returns:** the log-density, a scalar.
        """
        mean, log_std = self(cond)
        u = jnp.arctanh(jnp.clip(action, -1.0 + epsilon, 1.0 - epsilon))
        z = (u - mean) * jnp.exp(-log_std)
        log_gaussian = -0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi)
        return jnp.sum(log_gaussian - _log_tanh_jacobian(u))

    def mode(self, cond: Float[Array, " obs_dim"]) -> Float[Array, " action_dim"]:
        r"""The deterministic action $\tanh(\mu(\text{cond}))$ (for evaluation), strictly inside
        $(-1, 1)^d$. (Called the mode by convention; the exact mode of the squashed density
        differs when $\sigma$ is large.)

        **Arguments:** `cond`, shape `(obs_dim,)`.

        **Returns:** the action, shape `(action_dim,)`.
        """
        mean, _ = self(cond)
        return _inside_unit_box(jnp.tanh(mean))
