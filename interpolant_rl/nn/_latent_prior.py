r"""A learnable, state-conditioned Gaussian prior over a flow's noise (its $t = 0$ end)."""

import math

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from .._custom_types import Scalar
from ._mlp import MLP


class GaussianLatentPrior(eqx.Module):
    r"""A Gaussian over the noise $z = x_0$ of a flow, conditioned on the state:

    $$q_\psi(z \mid s) = \mathcal N\big(\mu_\psi(s),\ L_\psi(s) L_\psi(s)^\top\big),\qquad
      z = \mu_\psi(s) + L_\psi(s)\,\varepsilon,\quad \varepsilon \sim \mathcal N(0, I),$$

    with $L_\psi$ lower triangular with a positive diagonal $e^{\ell_\psi(s)}$ (`full_covariance`)
    or diagonal. One `MLP(cond)` outputs $\mu$, $\ell$ (clipped to `[log_scale_min,
    log_scale_max]`) and, for a full covariance, the $d(d-1)/2$ entries below the diagonal. The
    output layer starts at zero, so a fresh prior is exactly $\mathcal N(0, I)$: the flow's own
    prior, i.e. behaviour cloning.

    Its divergence from the flow's prior is closed-form:

    $$\mathrm{KL}\big(q_\psi(\cdot \mid s)\,\|\,\mathcal N(0, I)\big)
      = \tfrac12\big(\|L\|_F^2 + \|\mu\|^2 - d\big) - \textstyle\sum_i \log L_{ii}.$$

    **Fields:** `mlp`, `noise_dim` $d$, `obs_dim`, `full_covariance`, `log_scale_min`,
    `log_scale_max` (static).
    """

    mlp: MLP
    noise_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)
    full_covariance: bool = eqx.field(static=True)
    log_scale_min: float = eqx.field(static=True)
    log_scale_max: float = eqx.field(static=True)

    def __init__(
        self,
        noise_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        full_covariance: bool = True,
        log_scale_min: float = -5.0,
        log_scale_max: float = 2.0,
        layer_norm: bool = False,
        key,
    ):
        r"""**Arguments:**

        - `noise_dim`: the dimension $d$ of the flow's noise (its action dimension).
        - `obs_dim`: the dimension of the state `cond` ($\ge 1$).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][].
        - `full_covariance`: a lower-triangular $L$ (default) or a diagonal one.
        - `log_scale_min`, `log_scale_max`: the clipping range of $\log L_{ii}$.
        - `key`: a JAX PRNG key.
        """
        if obs_dim < 1:
            raise ValueError(f"GaussianLatentPrior needs a state: obs_dim >= 1, got {obs_dim}")
        if not log_scale_min < log_scale_max:
            raise ValueError(
                "GaussianLatentPrior needs log_scale_min < log_scale_max, got "
                f"{log_scale_min} and {log_scale_max}"
            )
        below = noise_dim * (noise_dim - 1) // 2 if full_covariance else 0
        self.mlp = MLP(
            obs_dim,
            2 * noise_dim + below,
            width,
            depth,
            layer_norm=layer_norm,
            final_scale=0.0,
            key=key,
        )
        self.noise_dim = noise_dim
        self.obs_dim = obs_dim
        self.full_covariance = full_covariance
        self.log_scale_min = float(log_scale_min)
        self.log_scale_max = float(log_scale_max)

    def __call__(
        self, cond: Float[Array, " obs_dim"]
    ) -> tuple[Float[Array, " noise_dim"], Float[Array, "noise_dim noise_dim"]]:
        """**Returns:** `(mean, scale_tril)`: $\\mu_\\psi(s)$ and the lower-triangular
        $L_\\psi(s)$ (diagonal when `full_covariance=False`)."""
        if jnp.shape(cond) != (self.obs_dim,):
            raise ValueError(
                f"GaussianLatentPrior expects cond of shape ({self.obs_dim},), got "
                f"{jnp.shape(cond)} (networks act on one sample: use jax.vmap for batches)"
            )
        d = self.noise_dim
        out = self.mlp(cond)
        mean = out[:d]
        log_scale = jnp.clip(out[d : 2 * d], self.log_scale_min, self.log_scale_max)
        scale_tril = jnp.diag(jnp.exp(log_scale))
        if self.full_covariance:
            rows, cols = jnp.tril_indices(d, k=-1)
            scale_tril = scale_tril.at[rows, cols].set(out[2 * d :])
        return mean, scale_tril

    def sample(
        self, cond: Float[Array, " obs_dim"], noise: Float[Array, " noise_dim"]
    ) -> Float[Array, " noise_dim"]:
        r"""$z = \mu_\psi(s) + L_\psi(s)\,\varepsilon$ for a given standard normal
        $\varepsilon$ = `noise` (reparameterised: differentiable in the parameters)."""
        mean, scale_tril = self(cond)
        return mean + scale_tril @ noise

    def kl_to_standard(self, cond: Float[Array, " obs_dim"]) -> Scalar:
        r"""$\mathrm{KL}(q_\psi(\cdot \mid s)\,\|\,\mathcal N(0, I))$, in closed form (above)."""
        mean, scale_tril = self(cond)
        log_diag = jnp.log(jnp.diagonal(scale_tril))
        return 0.5 * (jnp.sum(scale_tril**2) + jnp.sum(mean**2) - self.noise_dim) - jnp.sum(
            log_diag
        )

    def log_prob(self, cond: Float[Array, " obs_dim"], z: Float[Array, " noise_dim"]) -> Scalar:
        r"""$\log q_\psi(z \mid s)$."""
        mean, scale_tril = self(cond)
        white = jsl.solve_triangular(scale_tril, z - mean, lower=True)  # L^{-1}(z - mu)
        log_det = jnp.sum(jnp.log(jnp.diagonal(scale_tril)))
        return -0.5 * jnp.sum(white**2) - log_det - 0.5 * self.noise_dim * math.log(2 * math.pi)
