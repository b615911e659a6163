"""Where QAM's adjoint-matching regression sends its policy, and why it stops short of the tilt.

    python benchmarks/qam_fixed_point.py [--fm-steps 3000 12000] [--direct bimodal --steps 3000]

Prints JSON (and writes benchmarks/results/qam_fixed_point.json):

- `closed_form`: for the `unimodal_linear` problem (Gaussian base, linear critic) the lean adjoint
  is the same on every path, so the regression's minimiser is $v_\\beta + c_i$ with
  $c_i = -\\sigma_i^2\\tilde a_i/2$; the rows give the T-step ODE policy's mean shift as a multiple
  of the exact tilt's, for the exact base and for bases flow-matched for `--fm-steps` steps (3x128,
  learning rate 3e-4, as the exact-tilt benchmark), with the lean adjoint's last step as the
  adjoint of the base-ODE step (`"ode"`, the default) or the reference code's (`"memoryless"`),
  and the base's Jacobian d v / d x [0, 0] at x = 0 next to the exact one.
- `direct` (with `--direct PROBLEM`): a 3x128 fine-tuned flow trained for `--steps` updates
  against the problem's *exact* base (no base error at all), for T = 10 and T = 30 training
  grids, acting with `flow_steps` = 10: the policy mean and sliced W2 to the exact tilt.

The figures are quoted in the agents guide ("Why QAM's policy stops short of the tilt").
"""

import argparse
import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import interpolant_rl as ir
from interpolant_rl import agents, objectives as obj
from interpolant_rl.nn import VelocityField
from interpolant_rl.testing import exact_tilt, sliced_wasserstein


ROOT = Path(__file__).resolve().parents[1]
INTERPOLANT = ir.LinearInterpolant()


def _train(trained, loss_fn, steps, seed):
    """`steps` optimiser steps of `loss_fn(model, key)`, 100 per compiled call."""

    @eqx.filter_jit
    def hundred(trained, key):
        arrays, static = eqx.partition(trained, eqx.is_array)

        def body(arrays, k):
            new, _ = eqx.combine(arrays, static).minimise(lambda m: loss_fn(m, k))
            return eqx.filter(new, eqx.is_array), None

        return eqx.combine(jax.lax.scan(body, arrays, jr.split(key, 100))[0], static)

    for i in range(steps // 100):
        trained = hundred(trained, jr.fold_in(jr.key(seed), i))
    return trained


def flow_matched_base(mixture, steps):
    data = mixture.sample(jr.key(7), 100_000)

    def loss(field, key):
        batch_key, loss_key = jr.split(key)
        actions = data[jr.randint(batch_key, (256,), 0, data.shape[0])]
        value = obj.flow_matching_loss(INTERPOLANT, field, actions, None, loss_key)
        return value, value

    field = VelocityField(mixture.dim, 0, exact_tilt.WIDTH, exact_tilt.DEPTH, key=jr.key(1))
    return _train(agents.Trained.create(field, agents.adam(3e-4)), loss, steps, 100).model


def shift_ratio(base, steps, last_adjoint_step, slope, tau, exact_shift):
    """The T-step ODE policy's mean shift at the regression's minimiser / the tilt's shift."""
    scheme = obj.QAMReferenceAdjointMatching(steps, last_adjoint_step)
    dim = slope.shape[0]
    ts, xs = scheme.trajectory(base, base, jnp.zeros(dim), jr.key(1), None)
    adjoints = scheme.adjoint(base, base, ts, xs, -tau * slope, None, lean=True)
    h = 1.0 / steps
    controls = -0.5 * (2 * (1 - ts + h) / (ts + h))[:, None] * adjoints
    tuned = plain = jnp.zeros(dim)
    for i in range(steps):
        tuned = tuned + h * (base(ts[i], tuned, None) + controls[i])
        plain = plain + h * base(ts[i], plain, None)
    return [round(float(r), 3) for r in (tuned - plain) / exact_shift]


def closed_form(fm_steps):
    mixture, critic, tau, _ = exact_tilt.load_problem("unimodal_linear")
    slope = jnp.asarray(critic.b)
    exact_shift = tau * jnp.asarray(mixture.covs[0]) @ slope
    bases = {"exact": mixture.velocity_field(INTERPOLANT)}
    bases.update({f"flow_matched_{n}": flow_matched_base(mixture, n) for n in fm_steps})
    exact_velocity = bases["exact"]
    rows = []
    for name, base in bases.items():
        jacobians = {
            f"{t:.1f}": [
                round(float(jax.jacfwd(lambda x, v=v, t=t: v(t, x, None))(jnp.zeros(2))[0, 0]), 3)
                for v in (base, exact_velocity)
            ]
            for t in (0.5, 0.8, 0.9, 1.0)
        }
        for steps in (10, 20):
            rows.append(
                dict(
                    base=name,
                    T=steps,
                    shift_ratio_ode=shift_ratio(base, steps, "ode", slope, tau, exact_shift),
                    shift_ratio_memoryless=shift_ratio(
                        base, steps, "memoryless", slope, tau, exact_shift
                    ),
                    jacobian_00_base_vs_exact=jacobians,
                )
            )
    return rows


def direct(problem, steps):
    mixture, critic, tau, _ = exact_tilt.load_problem(problem)
    base, dim = mixture.velocity_field(INTERPOLANT), mixture.dim
    exact = mixture.tilt(critic.A, critic.b, tau)

    def gradient(cond, action):
        return jax.grad(lambda a: jnp.mean(critic(cond, jnp.clip(a, -1.0, 1.0))))(action)

    reference = np.asarray(exact.sample(jr.key(5), exact_tilt.NUM_SAMPLES))
    rows = []
    for train_steps in (10, 30):
        scheme = obj.QAMReferenceAdjointMatching(train_steps)

        def loss(field, key, scheme=scheme):
            return obj.adjoint_matching_loss(
                scheme, field, base, gradient, tau, 256, dim, None, key
            )

        field = VelocityField(dim, 0, exact_tilt.WIDTH, exact_tilt.DEPTH, key=jr.key(0))
        trained = _train(agents.Trained.create(field, agents.adam(3e-4, 1.0)), loss, steps, 0)
        noise = jr.normal(jr.key(99), (exact_tilt.NUM_SAMPLES, dim))
        observations = jnp.zeros((exact_tilt.NUM_SAMPLES, 0))
        actions = agents.flow_actions(INTERPOLANT, trained.model, observations, noise, 10)
        actions = np.asarray(jnp.clip(actions, -1.0, 1.0))
        rows.append(
            dict(
                problem=problem,
                train_T=train_steps,
                act_T=10,
                steps=steps,
                sliced_wasserstein=round(sliced_wasserstein(actions, reference, seed=0), 4),
                policy_mean=actions.mean(0).round(3).tolist(),
                exact_mean=np.asarray(exact.mean()).round(3).tolist(),
            )
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fm-steps", type=int, nargs="+", default=[3000, 12000])
    parser.add_argument("--direct", help="a built-in problem to train against its exact base")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/qam_fixed_point.json"
    )
    args = parser.parse_args(argv)
    result = dict(closed_form=closed_form(args.fm_steps))
    if args.direct:
        result["direct"] = direct(args.direct, args.steps)
    text = json.dumps(result, indent=1)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
