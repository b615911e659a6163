"""Network sizes and the checks that every agent configuration shares."""

import dataclasses
import math

from jaxtyping import PRNGKeyArray


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Size of an MLP (GELU activations)."""

    width: int = 512  # hidden units per layer (QAM protocol: 512)
    depth: int = 4  # hidden layers (QAM protocol: 4)
    layer_norm: bool = False  # LayerNorm after each hidden layer (protocol: actors without)

    def __post_init__(self):
        if self.width < 1 or self.depth < 1:
            raise ValueError(
                f"network width and depth must be >= 1, got {self.width}, {self.depth}"
            )


def build_network(
    network: type, action_dim: int, obs_dim: int, config: NetworkConfig, key: PRNGKeyArray
):
    """`network(action_dim, obs_dim, width, depth, layer_norm=..., key=key)` for any of the
    `interpolant_rl.nn` fields and policies, sized by `config`."""
    return network(
        action_dim, obs_dim, config.width, config.depth, layer_norm=config.layer_norm, key=key
    )


def check_positive(
    name: str, value: int | float, *, allow_zero: bool = False, allow_inf: bool = False
) -> None:
    r"""Raise a one-line `ValueError` unless `value > 0` (or `>= 0` with `allow_zero`) and finite
    (`allow_inf`: $+\infty$ is a meaningful value, e.g. QAM-FQL's $\alpha$). NaN never passes."""
    if not (value >= 0 if allow_zero else value > 0) or (math.isinf(value) and not allow_inf):
        bound = ">= 0" if allow_zero else "> 0"
        finite = "" if allow_inf else "finite and "
        raise ValueError(f"{name} must be {finite}{bound}, got {value}")
