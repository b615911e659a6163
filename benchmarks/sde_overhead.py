r"""Overhead of `interpolant_rl`'s fixed-grid integration against a hand-written `lax.scan`.

Run as `python benchmarks/sde_overhead.py [--quick]`. One JSON object goes to stdout; progress
goes to stderr.

What is measured, in one process, for a state-conditioned velocity network
`v(t, x, cond) = MLP(concat[cond, x, t])` (GELU, float32, action dim 8, observation dim 32) in
two sizes (4 hidden layers x 512 and 2 x 256):

- **Case (a)**, batch 256, 10 uniform steps, linear interpolant: Euler-Maruyama sampling of the
  memoryless SDE (`MemorylessSDE`, regularisation delta = 0.1) with the trajectory saved,
  followed by the lean adjoint of the *base* memoryless SDE solved backwards along it
  (`LeanAdjointODE` + `solve_adjoint`, the discrete adjoint of the forward pass), all in one
  jitted function vmapped over the batch. The terminal adjoint is `x_1` (a stand-in for
  `-tau grad_a Q(s, x_1)` that keeps the timing about the integrators).
- **Case (b)**, a single unbatched sample (the online rollout path): 10 steps of the memoryless
  SDE with Euler-Maruyama, and 10 Euler steps of the probability-flow ODE; final state only.

Each case has three implementations of exactly the same discretisation,

    x_{i+1} = x_i + h b(x_i, t_i) + sigma(t_i) sqrt(h) xi_i,
    b = v + (t v - x) / (t + delta),   sigma^2 = 2 (1 - t) / (t + delta),
    a_i = a_{i+1} + h vjp(b_base at (x_i, t_i))(a_{i+1}),

driven by the same standard normals `xi` (the library path gets them through a
`GridBrownianPath`):

- `library`: `interpolant_rl.sample` / `interpolant_rl.solve_adjoint` (a `lax.scan` over a Diffrax
  solver's own `step`);
- `scan`: the formulas above written by hand in a plain `jax.lax.scan` (per sample, and vmapped
  over the batch exactly like the library path);
- `diffeqsolve`: the same terms (`process.terms(brownian)`) through `diffrax.diffeqsolve` with
  `StepTo(ts)`, `max_steps=10` and `SaveAt(ts=ts)` where a trajectory is needed (case (a), also
  for the backward adjoint solve) or `SaveAt(t1=True)` otherwise: the evidence for why the
  library steps solvers in its own scan instead of calling `diffeqsolve`.

The three outputs are checked to agree (to 1e-4) before anything is timed.

Methodology: every function is jitted with all network weights as *arguments* (not
constants). Tracing + lowering and XLA compilation are timed separately through
`jax.jit(f).lower(...)` and `.compile()`. Steady state: after a warm-up, repetitions of
`calls_per_rep` blocking calls (each call `block_until_ready`, i.e. latency as an online rollout
sees it) are interleaved between the implementations, with the order rotated every repetition to
cancel drift from other processes on the machine; `ms_per_call` is the median over repetitions
(full mode: 30 repetitions of >= 0.2 s for case (a), 60 repetitions of >= 200 calls and >= 0.1 s
for case (b); `--quick`: 5 short repetitions).
`ratio_library_over_scan` is the headline number; the target is 1.10. The compiled HLO of each
implementation is summarised (instruction and while-loop counts) as evidence for any gap.
"""

import argparse
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax
import numpy as np

import interpolant_rl as ir


ACTION_DIM = 8
OBS_DIM = 32
NUM_STEPS = 10
BATCH = 256
DELTA = 0.1  # MemorylessSDE's default regularisation
TARGET_RATIO = 1.10
TOLERANCE = 1e-4
DTYPE = jnp.float32
NETWORKS = {"4x512": (4, 512), "2x256": (2, 256)}
IMPLEMENTATIONS = ("library", "scan", "diffeqsolve")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The velocity network.


class Velocity(eqx.Module):
    """`v(t, x, cond) = MLP(concat[cond, x, t])` on one unbatched sample."""

    mlp: eqx.nn.MLP

    def __init__(self, depth: int, width: int, *, key):
        self.mlp = eqx.nn.MLP(
            OBS_DIM + ACTION_DIM + 1,
            ACTION_DIM,
            width,
            depth,
            activation=jax.nn.gelu,
            dtype=DTYPE,
            key=key,
        )

    def __call__(self, t, x, cond):
        t = jnp.asarray(t, x.dtype)
        return self.mlp(jnp.concatenate([cond, x, t[None]]))


# --------------------------------------------------------------------------------------------
# The hand-written discretisation (linear interpolant, memoryless SDE with regularisation DELTA).


def grid() -> jax.Array:
    return jnp.linspace(0.0, 1.0, NUM_STEPS + 1, dtype=DTYPE)


def memoryless_drift(v, t, x, cond):
    velocity = v(t, x, cond)
    return velocity + (t * velocity - x) / (t + DELTA)


def memoryless_sigma(t):
    return jnp.sqrt(2.0 * (1.0 - t) / (t + DELTA))


def scan_sde(v, x0, cond, xi, save_trajectory: bool):
    """Euler-Maruyama on one sample; `xi` holds standard normals, shape `(NUM_STEPS, dim)`."""
    ts = grid()

    def step(x, inputs):
        t, h, xi_i = inputs
        x_next = x + h * memoryless_drift(v, t, x, cond) + memoryless_sigma(t) * jnp.sqrt(h) * xi_i
        return x_next, (x if save_trajectory else None)

    x1, xs = jax.lax.scan(step, x0, (ts[:-1], jnp.diff(ts), xi))
    return jnp.concatenate([xs, x1[None]]) if save_trajectory else x1


def scan_ode(v, x0, cond):
    ts = grid()

    def step(x, inputs):
        t, h = inputs
        return x + h * v(t, x, cond), None

    x1, _ = jax.lax.scan(step, x0, (ts[:-1], jnp.diff(ts)))
    return x1


def scan_lean_adjoint(v_base, xs, terminal, cond):
    """a_i = a_{i+1} + h vjp(b_base at (x_i, t_i))(a_{i+1}); returns all a_i, shape like `xs`."""
    ts = grid()

    def step(a, inputs):
        t, h, x = inputs
        _, vjp = jax.vjp(lambda y: memoryless_drift(v_base, t, y, cond), x)
        a_prev = a + h * vjp(a)[0]
        return a_prev, a_prev

    _, adjoints = jax.lax.scan(step, terminal, (ts[:-1], jnp.diff(ts), xs[:-1]), reverse=True)
    return jnp.concatenate([adjoints, terminal[None]])


# --------------------------------------------------------------------------------------------
# The three implementations of each case. Each takes (weights, ..., data) and is vmapped/jitted
# by the caller; `static` parts of the networks are closed over.


def brownian_from(xi) -> ir.GridBrownianPath:
    ts = grid()
    increments = jnp.sqrt(jnp.diff(ts))[:, None] * xi
    return ir.GridBrownianPath(ts, increments, None, diffrax.BrownianIncrement)


def terminal_adjoint(x1):
    return x1  # gradient of |x_1|^2 / 2: a stand-in for -tau grad_a Q(s, x_1)


def library_sample_adjoint(v, v_base, x0, cond, xi):
    process = ir.MemorylessSDE(ir.LinearInterpolant(), v)
    adjoint = ir.LeanAdjointODE(ir.MemorylessSDE(ir.LinearInterpolant(), v_base))
    ts, xs = ir.sample(
        process,
        x0,
        cond=cond,
        num_steps=NUM_STEPS,
        save_trajectory=True,
        brownian=brownian_from(xi),
    )
    adjoints = ir.solve_adjoint(adjoint, ts, xs, terminal_adjoint(xs[-1]), cond=cond)
    return xs, adjoints


def scan_sample_adjoint(v, v_base, x0, cond, xi):
    xs = scan_sde(v, x0, cond, xi, save_trajectory=True)
    return xs, scan_lean_adjoint(v_base, xs, terminal_adjoint(xs[-1]), cond)


def diffeqsolve_grid(terms, ts, y0, cond, save_trajectory: bool):
    saveat = diffrax.SaveAt(ts=ts) if save_trajectory else diffrax.SaveAt(t1=True)
    solution = diffrax.diffeqsolve(
        terms,
        diffrax.Euler(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        args=cond,
        stepsize_controller=diffrax.StepTo(ts),
        saveat=saveat,
        max_steps=NUM_STEPS,
    )
    return solution.ys if save_trajectory else solution.ys[-1]


def diffeqsolve_sample_adjoint(v, v_base, x0, cond, xi):
    ts = grid()
    process = ir.MemorylessSDE(ir.LinearInterpolant(), v)
    xs = diffeqsolve_grid(process.terms(brownian_from(xi)), ts, x0, cond, save_trajectory=True)
    adjoint = ir.LeanAdjointODE(ir.MemorylessSDE(ir.LinearInterpolant(), v_base))
    evaluation = ir.DiscreteAdjointEvaluation()

    def vector_field(s, a, cond):
        x, t = evaluation(ts, xs, s)
        return adjoint.vector_field(t, x, a, cond)

    backwards = diffeqsolve_grid(
        diffrax.ODETerm(vector_field), ts[::-1], terminal_adjoint(xs[-1]), cond, True
    )
    return xs, backwards[::-1]


def library_sde(v, x0, cond, xi):
    process = ir.MemorylessSDE(ir.LinearInterpolant(), v)
    return ir.sample(process, x0, cond=cond, num_steps=NUM_STEPS, brownian=brownian_from(xi))


def scan_sde_case(v, x0, cond, xi):
    return scan_sde(v, x0, cond, xi, save_trajectory=False)


def diffeqsolve_sde(v, x0, cond, xi):
    process = ir.MemorylessSDE(ir.LinearInterpolant(), v)
    return diffeqsolve_grid(process.terms(brownian_from(xi)), grid(), x0, cond, False)


def library_ode(v, x0, cond, xi):
    del xi
    process = ir.ProbabilityFlowODE(ir.LinearInterpolant(), v)
    return ir.sample(process, x0, cond=cond, num_steps=NUM_STEPS)


def scan_ode_case(v, x0, cond, xi):
    del xi
    return scan_ode(v, x0, cond)


def diffeqsolve_ode(v, x0, cond, xi):
    del xi
    process = ir.ProbabilityFlowODE(ir.LinearInterpolant(), v)
    return diffeqsolve_grid(process.terms(), grid(), x0, cond, False)


# --------------------------------------------------------------------------------------------
# Harness.


def make_case(name, impls, networks, batch, outputs):
    """Wrap per-sample implementations into jittable `f(weights, x0, cond, xi)`."""
    static = [eqx.partition(net, eqx.is_array)[1] for net in networks]
    weights = [eqx.partition(net, eqx.is_array)[0] for net in networks]

    def wrap(impl):
        def f(weights, x0, cond, xi):
            nets = [eqx.combine(w, s) for w, s in zip(weights, static, strict=True)]

            def one(x0, cond, xi):
                return impl(*nets, x0, cond, xi)

            return one(x0, cond, xi) if batch is None else jax.vmap(one)(x0, cond, xi)

        return f

    return {
        "name": name,
        "functions": {key: wrap(impl) for key, impl in impls.items()},
        "weights": weights,
        "batch": batch,
        "outputs": outputs,
    }


def hlo_summary(compiled) -> dict:
    """Instruction counts of the optimised HLO: in total and inside while-loop bodies."""
    text = compiled.as_text()
    computations = re.split(r"\n(?=\S)", text)
    body_names = set(re.findall(r"body=%?([\w.\-]+)", text))
    total = body = 0
    for computation in computations:
        lines = [line for line in computation.splitlines()[1:] if " = " in line]
        total += len(lines)
        header = computation.split("(", 1)[0].split()
        if header and header[-1].lstrip("%") in body_names:
            body += len(lines)
    return {
        "instructions": total,
        "while_loops": len(re.findall(r"\bwhile\(", text)),
        "while_body_instructions": body,
        "custom_calls": len(re.findall(r"custom-call\(", text)),
    }


def max_abs_diff(a, b) -> float:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in leaves)


def scale_of(tree) -> float:
    return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


def time_calls(fn: Callable, args, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / calls


def run_case(case, inputs, reps: int, min_calls: int, block_s: float) -> dict:
    name = case["name"]
    args = (case["weights"], *inputs)
    compiled, trace_lower_s, compile_s, hlo = {}, {}, {}, {}
    for impl in ("scan", "library", "diffeqsolve"):  # scan first: it pays shared warm-ups
        start = time.perf_counter()
        lowered = jax.jit(case["functions"][impl]).lower(*args)
        middle = time.perf_counter()
        compiled[impl] = lowered.compile()
        end = time.perf_counter()
        trace_lower_s[impl] = middle - start
        compile_s[impl] = end - middle
        hlo[impl] = hlo_summary(compiled[impl])
    log(f"[{name}] compiled: " + ", ".join(f"{k} {v:.2f}s" for k, v in compile_s.items()))

    outputs = {impl: jax.block_until_ready(compiled[impl](*args)) for impl in IMPLEMENTATIONS}
    scale = max(1.0, scale_of(outputs["scan"]))
    diffs = {impl: max_abs_diff(outputs[impl], outputs["scan"]) for impl in IMPLEMENTATIONS}
    for impl, diff in diffs.items():
        if not diff <= TOLERANCE * scale:
            raise AssertionError(
                f"[{name}] {impl} differs from the hand-written scan by {diff:.3g} "
                f"(tolerance {TOLERANCE} x scale {scale:.3g})"
            )

    # Warm-up, and calls per repetition so that one repetition lasts about `block_s`.
    estimate = min(
        min(time_calls(compiled[impl], args, 1) for _ in range(3)) for impl in IMPLEMENTATIONS
    )
    calls = max(min_calls, math.ceil(block_s / max(estimate, 1e-6)))
    for impl in IMPLEMENTATIONS:
        time_calls(compiled[impl], args, calls)

    samples = {impl: [] for impl in IMPLEMENTATIONS}
    for rep in range(reps):
        shift = rep % len(IMPLEMENTATIONS)
        for impl in IMPLEMENTATIONS[shift:] + IMPLEMENTATIONS[:shift]:
            samples[impl].append(1e3 * time_calls(compiled[impl], args, calls))
    ms = {impl: statistics.median(values) for impl, values in samples.items()}
    quartiles = {
        impl: [round(float(q), 4) for q in np.percentile(values, [25, 75])]
        for impl, values in samples.items()
    }
    ratio = ms["library"] / ms["scan"]
    log(
        f"[{name}] ms/call: library {ms['library']:.4f}, scan {ms['scan']:.4f}, "
        f"diffeqsolve {ms['diffeqsolve']:.4f} -> library/scan {ratio:.3f}"
    )
    return {
        "name": name,
        "config": {
            "batch": case["batch"] if case["batch"] is not None else "unbatched (1 sample)",
            "outputs": case["outputs"],
        },
        "ms_per_call": {k: round(v, 4) for k, v in ms.items()},
        "ms_per_call_iqr": quartiles,
        "ratio_library_over_scan": round(ratio, 4),
        "ratio_diffeqsolve_over_scan": round(ms["diffeqsolve"] / ms["scan"], 4),
        "target_ratio": TARGET_RATIO,
        "meets_target": bool(ratio <= TARGET_RATIO),
        "trace_lower_s": {k: round(v, 3) for k, v in trace_lower_s.items()},
        "compile_s": {k: round(v, 3) for k, v in compile_s.items()},
        "max_abs_diff_vs_scan": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        "reps": reps,
        "calls_per_rep": calls,
        "hlo": hlo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    options = parser.parse_args()
    # (repetitions, minimum calls per repetition, target seconds per repetition)
    if options.quick:
        timing_batch, timing_single = (5, 1, 0.02), (5, 20, 0.02)
    else:
        timing_batch, timing_single = (30, 1, 0.2), (60, 200, 0.1)

    key = jr.key(0)
    key_x, key_obs, key_xi, key_net = jr.split(key, 4)
    batch_x0 = jr.normal(key_x, (BATCH, ACTION_DIM), DTYPE)
    batch_obs = jr.normal(key_obs, (BATCH, OBS_DIM), DTYPE)
    batch_xi = jr.normal(key_xi, (BATCH, NUM_STEPS, ACTION_DIM), DTYPE)
    single = (batch_x0[0], batch_obs[0], batch_xi[0])

    cases = []
    for label, (depth, width) in NETWORKS.items():
        key_net, key_v, key_base = jr.split(key_net, 3)
        v = Velocity(depth, width, key=key_v)
        v_base = Velocity(depth, width, key=key_base)
        case_a = make_case(
            f"a_sde_sample_and_lean_adjoint/batch{BATCH}/{label}",
            {
                "library": library_sample_adjoint,
                "scan": scan_sample_adjoint,
                "diffeqsolve": diffeqsolve_sample_adjoint,
            },
            [v, v_base],
            BATCH,
            "trajectory (11 states) and lean adjoint (11 states)",
        )
        cases.append((case_a, (batch_x0, batch_obs, batch_xi), timing_batch))
        case_sde = make_case(
            f"b_sde_sample/single/{label}",
            {"library": library_sde, "scan": scan_sde_case, "diffeqsolve": diffeqsolve_sde},
            [v],
            None,
            "final state",
        )
        cases.append((case_sde, single, timing_single))
        case_ode = make_case(
            f"b_ode_sample/single/{label}",
            {"library": library_ode, "scan": scan_ode_case, "diffeqsolve": diffeqsolve_ode},
            [v],
            None,
            "final state",
        )
        cases.append((case_ode, single, timing_single))

    # Shared one-off costs (imports, tracing of jax.nn.gelu, ...) before anything is timed.
    warm_up = Velocity(1, 8, key=jr.key(1))
    jax.block_until_ready(jax.jit(lambda x, c: warm_up(0.5, x, c))(single[0], single[1]))

    results = []
    for case, inputs, timing in cases:
        log(f"[{case['name']}] running")
        results.append(run_case(case, inputs, *timing))

    device = jax.devices()[0]
    report = {
        "benchmark": "sde_overhead",
        "mode": "quick" if options.quick else "full",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "diffrax": diffrax.__version__,
            "equinox": eqx.__version__,
            "lineax": lineax.__version__,
            "interpolant_rl": ir.__version__,
        },
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "num_devices": jax.device_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "cpu_count": os.cpu_count(),
        "config": {
            "action_dim": ACTION_DIM,
            "obs_dim": OBS_DIM,
            "num_steps": NUM_STEPS,
            "dtype": jnp.dtype(DTYPE).name,
            "interpolant": "LinearInterpolant",
            "regularisation": DELTA,
            "solver": "diffrax.Euler (Euler-Maruyama for the SDE; Euler backwards for the adjoint)",
            "networks": {
                label: {"hidden_layers": depth, "width": width, "activation": "gelu"}
                for label, (depth, width) in NETWORKS.items()
            },
            "timing": {
                "reps_calls_seconds_per_rep": {"batch": timing_batch, "single": timing_single},
                "statistic": "median over interleaved repetitions (order rotated)",
                "call": "compiled(*args) then block_until_ready, every call",
            },
        },
        "target_ratio": TARGET_RATIO,
        "cases": results,
        "all_meet_target": all(result["meets_target"] for result in results),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
