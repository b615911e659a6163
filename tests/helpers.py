"""Shared jitted simulations for the tests (compiled once per process structure and shape)."""

import struct

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import interpolant_rl as ir
from interpolant_rl.agents import Batch


@eqx.filter_jit
def simulate(process, solver, num_steps, x0s, keys):
    """Trajectories `(n, num_steps + 1, dim)` of `process` from `x0s`, one key per sample."""

    def one(x0, key):
        return ir.sample(
            process, x0, key=key, solver=solver, num_steps=num_steps, save_trajectory=True
        )[1]

    return jax.vmap(one)(x0s, keys)


@eqx.filter_jit
def simulate_with_paths(process, solver, x0s, paths):
    """Final states driven by explicit Brownian paths (a batched `GridBrownianPath`)."""

    def one(x0, path):
        return ir.sample(process, x0, solver=solver, ts=path.ts, brownian=path)

    return jax.vmap(one)(x0s, paths)


def draw_paths(key, n, num_cells, dim, levy_area=diffrax.BrownianIncrement, t0=0.0, t1=1.0):
    """`n` independent grid Brownian paths on a uniform grid of `num_cells` cells on [t0, t1]."""
    ts = jnp.linspace(t0, t1, num_cells + 1)
    keys = jax.random.split(key, n)
    return jax.vmap(lambda k: ir.GridBrownianPath.draw(k, ts, (dim,), levy_area))(keys)


def coarsen(paths, factor):
    return jax.vmap(lambda p: p.coarsen(factor))(paths)


def fitted_order(step_counts, errors):
    """Least-squares slope of log(error) against log(step size)."""
    h = 1.0 / np.asarray(step_counts, dtype=float)
    return float(np.polyfit(np.log(h), np.log(np.asarray(errors)), 1)[0])


def strong_errors(process, solver, x0s, paths, step_counts):
    """Mean pathwise error at the final time of coarse solves against the solve on the paths' own
    (fine) grid, every solve driven by the same Brownian motion (coarsened)."""
    reference = simulate_with_paths(process, solver, x0s, paths)
    fine = paths.increments.shape[1]
    return [
        float(
            jnp.mean(
                jnp.linalg.norm(
                    simulate_with_paths(process, solver, x0s, coarsen(paths, fine // s))
                    - reference,
                    axis=-1,
                )
            )
        )
        for s in step_counts
    ]


def read_scalars(run_dir):
    """`[(tag, step, value)]` from every event file, in file order, parsed from the TFRecord
    framing (length, crc, payload, crc) without TensorBoard itself. A purge marker (a session
    log START event with a step) is returned as `("<purge>", step, None)`."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    out = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            payload = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = Event.FromString(payload)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                out.append(("<purge>", event.step, None))
            for value in event.summary.value:
                out.append((value.tag, event.step, value.simple_value))
    return out


def random_batch(key, lead=(), batch=8, obs_dim=3, action_dim=2):
    """A random agent `Batch` with leading axes `lead` (e.g. `(num_updates,)`) and the first
    transition of every batch marked invalid (so the validity weights are exercised)."""
    keys = jr.split(key, 4)
    shape = (*lead, batch)
    return Batch(
        observations=jr.normal(keys[0], (*shape, obs_dim)),
        actions=jnp.clip(jr.normal(keys[1], (*shape, action_dim)), -1, 1),
        rewards=jr.normal(keys[2], shape),
        masks=jnp.ones(shape),
        next_observations=jr.normal(keys[3], (*shape, obs_dim)),
        valid=jnp.ones(shape).at[..., 0].set(0.0),
    )
