r"""Exporting an agent's acting policy as a self-contained StableHLO artefact, and loading it back
with JAX alone.

File layout (format `interpolant_rl-policy`, version 1): one line of UTF-8 JSON (the header), a
newline, then the payload: the `jax.export` serialisation of the acting function, followed by the
raw bytes of each of its arrays (the networks' weights) in the order and with the shapes and dtypes
the header lists. The header records the payload's length and SHA-256, so a truncated or damaged
file is refused before anything is deserialised.

The weights travel as arguments of the exported function, not as constants folded into its
program: XLA simplifies a program around constant weights differently (the actions then differ
from `agent.act`'s in the last bit), while with the weights as arguments the exported program is
the one `agent.act` compiles.

This module imports only the standard library, NumPy and JAX at import time; `export_policy`
imports the agents (and Equinox) when it is called. So the loader runs where only JAX (and
`flatbuffers`, which `jax.export`'s serialisation needs) is installed: copy this file, or read the
format above directly.
"""

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


FORMAT = "interpolant_rl-policy"
FORMAT_VERSION = 1
_BATCH = "batch"  # the exported program's symbolic batch dimension


def export_policy(
    agent: Any,
    path: str | os.PathLike,
    *,
    obs_dim: int,
    platforms: Sequence[str] = ("cpu", "cuda"),
    batch_size: int | None = None,
    name: str | None = None,
    config: Any = None,
) -> dict[str, Any]:
    r"""Write `agent`'s acting function, $(s, \text{key}) \mapsto a$, to `path` as a serialised
    StableHLO program with a JSON header; [`load_policy`][interpolant_rl.load_policy] runs it
    with only JAX installed.

    The exported function is exactly what
    [`AbstractAgent.act`][interpolant_rl.agents.AbstractAgent.act] runs: the agent's
    [`acting_policy`][interpolant_rl.agents.AbstractAgent.acting_policy] with its fixed solver
    grid (flow steps, best-of-$N$, ...), its weights frozen at export time. On the same platform
    its actions equal `agent.act`'s bit for bit, for one observation and for a batch (with one
    exception, below). The exported program is not `vmap`ped over keys.

    **Batches.** By default the program is exported once with a *symbolic* batch dimension:
    observations `(batch, obs_dim)` for any `batch >= 1`, and one key for the whole batch, as
    `agent.act` takes it (the noise of the whole batch is drawn from that key, so a row's action
    depends on the batch it is in, exactly as with `agent.act`; it is not a `vmap` over rows). A
    single observation `(obs_dim,)` runs as a batch of one. `batch_size=n` exports for batches of
    exactly `n` instead (and for single observations when `n = 1`).

    **The exception.** In `agent.act`, XLA folds the DDPM ancestral sampler's schedule (a
    function of the fixed time grid) into constants, evaluated on the host; a symbolic batch or
    a multi-platform program keeps it a run-time computation, whose `exp`/`sqrt` may differ in
    the last bit. So for the DDPM-sampled agents (QSM, DAC, Diffusion-QL, diffusion BC) the
    actions agree with `agent.act`'s to about $10^{-7}$, and bit for bit only when exported with
    `platforms=("cpu",)` and a `batch_size` (and run on a CPU). Every other registered agent
    (flows on a fixed grid, one-step and Gaussian policies, best-of-$N$, consistency models) is
    bit for bit with the defaults.

    **Keys** cross the boundary as raw key data (`jax.random.key_data(key)`: `uint32` of shape
    `(2,)` for the default `threefry2x32`), so the loader needs no typed keys; the header records
    the implementation.

    **Arguments:**

    - `agent`: an [`AbstractAgent`][interpolant_rl.agents.AbstractAgent].
    - `path`: the file to write (atomically: the old file or the new one, never half of each).
    - `obs_dim`: the observation size the agent was built for.
    - `platforms`: the platforms to lower for (`jax.export` lowers for platforms this machine
      lacks: an artefact made on a CPU-only machine runs on an NVIDIA GPU).
    - `batch_size`: `None` (any batch, the default) or the one batch size to export for.
    - `name`, `config`: recorded in the header (the registry name and the configuration, as
      `repr`), for the reader's information.

    **Returns:** the header written (a JSON-serialisable dictionary).

    !!! example

        ```python
        agent = agents.make_agent("fql", obs_dim, action_dim, jr.key(0), config)
        ir.export_policy(agent, "policy.jaxpolicy", obs_dim=obs_dim, name="fql", config=config)
        policy = ir.load_policy("policy.jaxpolicy")  # elsewhere: needs only jax
        action = policy(observation, jax.random.key_data(jr.key(1)))
        ```
    """
    import equinox as eqx

    from . import __version__
    from ._files import atomic_write
    from .agents import AbstractAgent

    if not isinstance(agent, AbstractAgent):
        raise TypeError(f"export_policy needs an AbstractAgent, got {type(agent).__name__}")
    if obs_dim < 1:
        raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be None or >= 1, got {batch_size}")
    impl = jax.config.jax_default_prng_impl
    key_shape = tuple(jax.random.key_data(jax.random.key(0, impl=impl)).shape)
    policy = type(agent).acting_policy(agent)
    arrays, static = eqx.partition(policy, eqx.is_array)
    leaves, treedef = jax.tree.flatten(arrays)
    leaves = [np.asarray(leaf) for leaf in leaves]
    if any(not np.issubdtype(leaf.dtype, np.number) for leaf in leaves):
        raise ValueError("export_policy: the acting policy holds a non-numeric array (a key?)")

    def act(weights, observations, key_data):
        acting = eqx.combine(jax.tree.unflatten(treedef, weights), static)
        return acting(observations, jax.random.wrap_key_data(key_data, impl=impl))

    (batch,) = jax.export.symbolic_shape(_BATCH) if batch_size is None else (batch_size,)
    exported = jax.export.export(jax.jit(act), platforms=tuple(platforms))(
        [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves],
        jax.ShapeDtypeStruct((batch, obs_dim), jnp.float32),
        jax.ShapeDtypeStruct(key_shape, jnp.uint32),
    )
    module = bytes(_serialise(exported))
    payload = module + b"".join(np.ascontiguousarray(leaf).tobytes() for leaf in leaves)
    header = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        library=__version__,
        jax=jax.__version__,
        agent=f"{type(agent).__module__}.{type(agent).__qualname__}",
        name=name,
        config=None if config is None else repr(config),
        obs_dim=obs_dim,
        action_dim=int(exported.out_avals[0].shape[-1]),
        dtype="float32",
        batch_size=batch_size,
        batch=(
            f"symbolic: observations ({_BATCH}, obs_dim) or (obs_dim,); one key per call"
            if batch_size is None
            else f"static: observations ({batch_size}, obs_dim)"
            + (" or (obs_dim,)" if batch_size == 1 else "")
            + "; one key per call"
        ),
        key=dict(impl=impl, format="raw key data", dtype="uint32", shape=list(key_shape)),
        platforms=list(exported.platforms),
        module_bytes=len(module),
        arrays=[dict(shape=list(leaf.shape), dtype=str(leaf.dtype)) for leaf in leaves],
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
    )

    def write(file):
        file.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        file.write(payload)

    atomic_write(path, write)
    return header


class LoadedPolicy:
    """An exported acting policy, loaded: `policy(observations, key) -> actions`, as
    [`load_policy`][interpolant_rl.load_policy] describes. `header` is the file's JSON header,
    `exported` the `jax.export.Exported` program."""

    def __init__(self, header: dict[str, Any], exported: Any, weights: list):
        self.header = header
        self.exported = exported
        self.obs_dim = int(header["obs_dim"])
        self.action_dim = int(header["action_dim"])
        self.batch_size = header.get("batch_size")
        self._key_shape = tuple(header["key"]["shape"])
        self._weights = weights
        self._call = jax.jit(exported.call)

    def __call__(self, observations, key) -> jax.Array:
        observations = jnp.asarray(observations, dtype=jnp.float32)
        shape = observations.shape
        if self.batch_size is None:
            wrong = len(shape) not in (1, 2) or shape[-1] != self.obs_dim or 0 in shape
            takes = f"({self.obs_dim},) or (batch >= 1, {self.obs_dim})"
        else:
            one = (self.obs_dim,) if self.batch_size == 1 else None
            wrong = shape not in ((self.batch_size, self.obs_dim), one)
            takes = f"({self.batch_size}, {self.obs_dim})" + (f" or {one}" if one else "")
        if wrong:
            raise ValueError(f"observations of shape {shape}: this policy takes {takes}")
        key = _key_data(key, self.header["key"]["impl"])
        if key.shape != self._key_shape or key.dtype != jnp.uint32:
            raise ValueError(
                f"a key of shape {key.shape} and dtype {key.dtype}: this policy takes raw key "
                f"data, uint32 of shape {self._key_shape} ({self.header['key']['impl']})"
            )
        if observations.ndim == 1:
            return self._call(self._weights, observations[None], key)[0]
        return self._call(self._weights, observations, key)

    def __repr__(self):
        return (
            f"LoadedPolicy(name={self.header.get('name')!r}, obs_dim={self.obs_dim}, "
            f"action_dim={self.action_dim}, platforms={self.header['platforms']})"
        )


def load_policy(path: str | os.PathLike) -> LoadedPolicy:
    """Load a policy written by [`export_policy`][interpolant_rl.export_policy].

    Needs only JAX (and `flatbuffers`, which `jax.export`'s deserialisation needs): neither the
    agents nor Equinox are imported.

    **Arguments:**

    - `path`: the artefact.

    **Returns:** a callable `policy(observations, key) -> actions`:

    - `observations`: `(obs_dim,)` or `(batch, obs_dim)` (any `batch >= 1`; exactly the
      exported `batch_size` where one was given), cast to `float32` as `agent.act` does;
    - `key`: raw key data, `uint32` of the header's key shape (`jax.random.PRNGKey(0)`, or
      `jax.random.key_data(key)` of a typed key), or a typed key of the recorded implementation;
    - the actions, `(action_dim,)` or `(batch, action_dim)`, in $[-1, 1]$.

    It also carries `policy.header` (the file's JSON header, a dictionary), `policy.obs_dim`,
    `policy.action_dim` and `policy.exported` (the `jax.export.Exported` program).

    Raises a one-line `ValueError` naming the file for a missing file, one that is not a policy
    export, one of another format version, or a truncated or damaged one.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the policy file ({error.strerror})") from None
    line, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not newline or not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an interpolant_rl policy export (no {FORMAT} header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: policy export format version {header.get('format_version')}, "
            f"this loader reads version {FORMAT_VERSION}"
        )
    if len(payload) != header.get("payload_bytes"):
        raise ValueError(
            f"{path}: truncated or padded policy export "
            f"({len(payload)} payload bytes, the header says {header.get('payload_bytes')})"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError(f"{path}: damaged policy export (the payload's SHA-256 does not match)")
    try:
        exported = _deserialise(payload[: header["module_bytes"]])
        weights, offset = [], header["module_bytes"]
        for spec in header["arrays"]:
            dtype = jnp.dtype(spec["dtype"])
            size = int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize
            array = np.frombuffer(payload, dtype=dtype, count=size // dtype.itemsize, offset=offset)
            weights.append(jnp.asarray(array.reshape(spec["shape"])))
            offset += size
    except Exception as error:  # a damaged program or header: whatever the parser raised
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: cannot read the exported program ({message})") from None
    if offset != len(payload):
        raise ValueError(f"{path}: the header's arrays do not fill the payload")
    return LoadedPolicy(header, exported, weights)


def _key_data(key, impl: str) -> jax.Array:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != impl:
            raise ValueError(
                f"a {jax.random.key_impl(key)} key: this policy was exported for {impl} keys"
            )
        return jax.random.key_data(key)
    return jnp.asarray(key)


def _serialise(exported) -> bytearray:
    try:
        return exported.serialize()
    except ImportError:
        raise ImportError(
            "export_policy needs the flatbuffers package for jax.export (pip install flatbuffers)"
        ) from None


def _deserialise(data: bytes):
    try:
        return jax.export.deserialize(bytearray(data))
    except ImportError:
        raise ImportError(
            "load_policy needs the flatbuffers package for jax.export (pip install flatbuffers)"
        ) from None
