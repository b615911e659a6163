r"""Exponential moving averages of network parameters (target networks)."""

import equinox as eqx
import jax
from jaxtyping import PyTree

from .._custom_types import ScalarLike


def ema_update(target: PyTree, online: PyTree, rate: ScalarLike) -> PyTree:
    r"""One exponential-moving-average step of a target network towards its online network,

    $$\theta^- \leftarrow (1 - \lambda)\,\theta^- + \lambda\,\theta,$$

    on the floating-point array leaves; every other leaf (activation functions, static fields,
    integer arrays such as step counters) is kept from `target`. `target` and `online` must have
    the same structure (e.g. two copies of the same module).

    **Arguments:**

    - `target`: the target parameters $\theta^-$ (any PyTree, e.g. an Equinox module).
    - `online`: the online parameters $\theta$.
    - `rate`: $\lambda \in [0, 1]$ (0.005 in the QAM protocol; 1 copies `online`, 0 keeps
      `target`).

    **Returns:** the updated target, with the structure of `target`.

    !!! example
        ```python
        target_critic = ema_update(target_critic, critic, 0.005)
        ```
    """
    target_arrays, target_rest = eqx.partition(target, eqx.is_inexact_array)
    online_arrays = eqx.filter(online, eqx.is_inexact_array)
    averaged = jax.tree_util.tree_map(
        lambda old, new: (1 - rate) * old + rate * new, target_arrays, online_arrays
    )
    return eqx.combine(averaged, target_rest)
