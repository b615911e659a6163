r"""The multi-layer perceptron every network of the package is built from."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import ScalarLike


def _glorot_linear(in_size: int, out_size: int, scale: float, key: PRNGKeyArray) -> eqx.nn.Linear:
    # Glorot-uniform weights (variance scaling 1, fan_avg) and zero biases, as the FQL/QAM
    # reference networks; `scale` multiplies the weights.
    init_key, weight_key = jr.split(key)
    layer = eqx.nn.Linear(in_size, out_size, key=init_key)
    limit = math.sqrt(6.0 / (in_size + out_size))
    weight = jr.uniform(
        weight_key, layer.weight.shape, layer.weight.dtype, minval=-limit, maxval=limit
    )
    return eqx.tree_at(
        lambda linear: (linear.weight, linear.bias),
        layer,
        (scale * weight, jnp.zeros_like(layer.bias)),
    )


class MLP(eqx.Module):
    r"""A multi-layer perceptron on one unbatched vector:

    $$h_0 = x,\qquad h_{i} = \mathrm{LN}\big(\phi(W_i h_{i-1} + b_i)\big)\ (i = 1..\text{depth}),
      \qquad y = W_{\text{out}} h_{\text{depth}} + b_{\text{out}}$$

    with activation $\phi$ (GELU by default) and the LayerNorm $\mathrm{LN}$ only when
    `layer_norm=True`. As in the FQL/QAM reference networks, the LayerNorm follows the
    activation of each hidden layer (never the output), its $\epsilon$ is $10^{-6}$, the weights
    are initialised Glorot-uniform and the biases at zero. `depth=0` is a single affine map.

    The paper-scale networks are `MLP(in_size, out_size, 512, 4, ...)`: LayerNorm for critics,
    none for actors.
    """

    layers: tuple[eqx.nn.Linear, ...]
    norms: tuple[eqx.nn.LayerNorm, ...]
    activation: Callable[[Array], Array]
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = False,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        final_scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `in_size`, `out_size`: input and output dimensions (both $\ge 1$).
        - `width`: the size of every hidden layer.
        - `depth`: the number of hidden layers ($\ge 0$).
        - `layer_norm`: a LayerNorm after each hidden activation.
        - `activation`: the hidden nonlinearity (default `jax.nn.gelu`).
        - `final_scale`: multiplies the initial weights of the output layer (e.g. a small value
          to start a network near zero).
        - `key`: a JAX PRNG key for the initialisation.
        """
        if in_size < 1 or out_size < 1:
            raise ValueError(
                f"MLP needs in_size >= 1 and out_size >= 1, got in_size={in_size}, "
                f"out_size={out_size}"
            )
        if depth < 0:
            raise ValueError(f"MLP needs depth >= 0, got {depth}")
        if depth > 0 and width < 1:
            raise ValueError(f"MLP needs width >= 1, got {width}")
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jr.split(key, depth + 1)
        scales = [1.0] * depth + [final_scale]
        self.layers = tuple(
            _glorot_linear(n_in, n_out, scale, k)
            for n_in, n_out, scale, k in zip(sizes[:-1], sizes[1:], scales, keys, strict=True)
        )
        self.norms = tuple(
            eqx.nn.LayerNorm(width, eps=1e-6) for _ in range(depth if layer_norm else 0)
        )
        self.activation = activation
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        r"""**Arguments:** `x`, one input of shape `(in_size,)`.

        **Returns:** the output, shape `(out_size,)`.
        """
        for index, layer in enumerate(self.layers[:-1]):
            x = self.activation(layer(x))
            if self.norms:
                x = self.norms[index](x)
        return self.layers[-1](x)


def _network_input(
    name: str,
    obs_dim: int,
    cond: Float[Array, " obs_dim"] | None,
    vector: Float[Array, " dim"],
    expected_dim: int,
    *times: ScalarLike,
) -> Float[Array, " inputs"]:
    # concat[cond, vector, *times] with clear errors; `cond` is None (or empty) iff obs_dim == 0.
    if jnp.shape(vector) != (expected_dim,):
        raise ValueError(
            f"{name} expects an input vector of shape ({expected_dim},), got {jnp.shape(vector)}"
        )
    dtype = vector.dtype
    parts = []
    if obs_dim == 0:
        if cond is not None and jnp.size(cond) != 0:
            raise ValueError(
                f"{name} was built with obs_dim=0 (unconditional): pass cond=None, "
                f"got cond of shape {jnp.shape(cond)}"
            )
    elif cond is None:
        raise ValueError(f"{name} was built with obs_dim={obs_dim}: cond must be given")
    elif jnp.shape(cond) != (obs_dim,):
        raise ValueError(
            f"{name} expects cond of shape ({obs_dim},), got {jnp.shape(cond)} "
            "(networks act on one sample: use jax.vmap for batches)"
        )
    else:
        parts.append(cond.astype(dtype))
    parts.append(vector)
    parts.extend(jnp.reshape(jnp.asarray(t, dtype=dtype), (1,)) for t in times)
    return jnp.concatenate(parts)
