r"""Checkpoints: a versioned, self-describing JSON header line, then the Equinox leaves.

File layout: one line of UTF-8 JSON (`format`, `format_version`, library version, the run's
configuration, the step, anything else the caller records), a newline, then
`equinox.tree_serialise_leaves` of the state PyTree. Written to a temporary file in the same
directory and renamed into place, so a checkpoint is either the old one or the new one, never half
of each.
"""

import io
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree

from .._files import atomic_write


FORMAT = "interpolant_rl-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, not ours, of another format version, truncated,
    or of another configuration. The message names the file."""


def _library_version() -> str:
    from .. import __version__

    return __version__


def _key_data(tree):
    # PRNG keys are typed arrays; serialise their raw data (restored by `_typed_keys`).
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if _is_key(x) else x, tree, is_leaf=_is_key
    )


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str | Path, state: PyTree, header: dict[str, Any]) -> None:
    """Write `state` (any PyTree of arrays and static data, e.g. `(agent, key, buffer)`) with a
    JSON-serialisable `header` (configuration, step, ...) atomically to `path`."""
    full_header = dict(format=FORMAT, format_version=FORMAT_VERSION, library=_library_version())
    full_header.update(header)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, _key_data(state))

    def write(file):
        file.write(json.dumps(full_header, sort_keys=True).encode() + b"\n")
        file.write(buffer.getvalue())

    atomic_write(path, write)


def read_checkpoint_header(path: str | Path) -> dict[str, Any]:
    """The header of a checkpoint, checked for format and version ([`CheckpointError`][interpolant_rl.train.CheckpointError], a
    `ValueError`, naming the file otherwise)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            line = file.readline()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({error.strerror})") from None
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(
            f"{path}: not an interpolant_rl checkpoint (no JSON header)"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an interpolant_rl checkpoint")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {header.get('format_version')}, "
            f"this library reads version {FORMAT_VERSION}"
        )
    return header


def load_checkpoint(path: str | Path, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint into the structure of `like` (a freshly built state of the same
    configuration); returns `(state, header)`."""
    path = Path(path)
    header = read_checkpoint_header(path)
    with open(path, "rb") as file:
        file.readline()
        try:
            raw = eqx.tree_deserialise_leaves(file, _key_data(like))
        except Exception as error:  # noqa: BLE001 - any mismatch is reported the same way
            raise CheckpointError(
                f"{path}: checkpoint does not match this configuration ({type(error).__name__}: {error})"
            ) from None
    state = jax.tree.map(
        lambda template, value: jax.random.wrap_key_data(value) if _is_key(template) else value,
        like,
        raw,
        is_leaf=_is_key,
    )
    return state, header
