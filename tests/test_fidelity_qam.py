"""QAM's fine-tuned flow: the residual parametrisation of the paper's Algorithm 1."""

import dataclasses
import functools

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import interpolant_rl as ir
from interpolant_rl import agents, nn


def _tiny(**fields):
    config = agents.resize(agents.default_config("qam"), width=16, depth=1, num_critics=2)
    return dataclasses.replace(config, flow_steps=3, **fields)


def test_residual_flow_starts_at_its_base_and_trains_only_the_correction():
    agent = agents.qam.create(3, 2, jr.key(0), _tiny(residual=True))
    flows = agent.flows
    velocity = flows.velocity()
    assert isinstance(velocity, nn.ResidualField)
    t, x, cond = 0.3, jnp.array([0.2, -0.1]), jnp.array([1.0, 0.0, -1.0])
    np.testing.assert_array_equal(velocity(t, x, cond), flows.base(t, x, cond))
    # acting = the base flow's ODE until the correction is trained
    observations = jr.normal(jr.key(1), (5, 3))
    base_actions = jnp.clip(
        agents.flow_actions(
            ir.LinearInterpolant(),
            flows.base,
            observations,
            jr.normal(jr.key(2), (5, 2)),
            3,
        ),
        -1,
        1,
    )
    np.testing.assert_allclose(
        flows.sample(observations, None, noise=jr.normal(jr.key(2), (5, 2))),
        base_actions,
        rtol=1e-6,
    )

    batch = helpers.random_batch(jr.key(3), lead=(2,), batch=8, obs_dim=3, action_dim=2)
    new, _ = agent.update(batch, jr.key(4))
    new_flows = new.flows
    # the fine-tuned velocity is always the *current* EMA base plus the trained correction
    np.testing.assert_allclose(
        new_flows.velocity()(t, x, cond),
        new_flows.base(t, x, cond) + new_flows.fine.model(t, x, cond),
        rtol=1e-6,
    )
    correction = jax.tree.leaves(eqx.filter(new_flows.fine.model, eqx.is_array))
    assert any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in correction[-2:])  # output layer moved


def test_separate_flow_is_the_default_network():
    agent = agents.qam.create(3, 2, jr.key(0), _tiny())
    assert isinstance(agent.flows.velocity(), nn.VelocityField)
    assert agent.flows.velocity() is agent.flows.fine.model


# --------------------------------------------------------------------------------------------
# Where QAM's policy lands: the fixed point of the adjoint-matching regression, in closed form.
#
# For a Gaussian base and a linear critic Q(a) = b.a the base velocity is affine in x, so the
# lean adjoint is the same on every path and the regression target at grid time t_i is a constant:
# the optimal fine velocity is v_beta(x, t_i) + c_i with c_i = -sigma_i^2 a_i / 2. Acting with
# the T-step Euler ODE of that field moves the mean by what the scheme's discretisation makes of
# the exact tilt's shift tau C b; the ODE of an affine field carries its mean exactly.

COV = jnp.array([[0.09, 0.03], [0.03, 0.06]])
SLOPE = jnp.array([1.0, 0.5])
TILT_TAU = 3.0


def _gaussian_base():
    from interpolant_rl.testing import GaussianMixture

    return GaussianMixture([1.0], [[0.0, 0.0]], [COV]).velocity_field(ir.LinearInterpolant())


def _fixed_point_controls(scheme, base):
    ts, xs = scheme.trajectory(base, base, jnp.zeros(2), jr.key(0), None)
    adjoints = scheme.adjoint(base, base, ts, xs, -TILT_TAU * SLOPE, None, lean=True)
    h = 1.0 / scheme.num_steps
    sigma2 = 2.0 * (1.0 - ts + h) / (ts + h)  # the reference scheme's shifted sigma_i^2
    return ts[:-1], -0.5 * sigma2[:-1, None] * adjoints[:-1]


def _ode_mean_shift(base, ts, controls):
    h = 1.0 / ts.shape[0]

    def step(means, inputs):
        t, c = inputs
        tuned, plain = means
        return (tuned + h * (base(t, tuned, None) + c), plain + h * base(t, plain, None)), None

    (tuned, plain), _ = jax.lax.scan(step, (jnp.zeros(2), jnp.zeros(2)), (ts, controls))
    return tuned - plain  # the shift of the policy's mean relative to the base ODE's


@functools.partial(jax.jit, static_argnums=(0, 1))
def _relative_shift_error(steps, last_adjoint_step):
    from interpolant_rl import objectives as obj

    base = _gaussian_base()
    scheme = obj.QAMReferenceAdjointMatching(steps, last_adjoint_step)
    ts, controls = _fixed_point_controls(scheme, base)
    exact = TILT_TAU * COV @ SLOPE
    return jnp.linalg.norm(_ode_mean_shift(base, ts, controls) - exact) / jnp.linalg.norm(exact)


def test_reference_last_adjoint_step_overshoots_the_tilt_at_first_order():
    errors = [float(_relative_shift_error(steps, "memoryless")) for steps in (10, 20, 40)]
    # the reference code's last step: T = 10 overshoots the tilt's shift by about 15 %, and the
    # bias halves as T doubles
    assert 0.10 < errors[0] < 0.20
    order = helpers.fitted_order([10, 20, 40], errors)
    assert 0.8 < order < 1.5, (errors, order)


def test_ode_last_adjoint_step_removes_most_of_that_bias():
    errors = [float(_relative_shift_error(steps, "ode")) for steps in (10, 20, 40)]
    reference = float(_relative_shift_error(10, "memoryless"))
    assert errors[0] < reference / 3 and max(errors) < 0.06, errors
    assert errors[2] < errors[0]


def test_the_closed_form_controls_are_the_adjoint_matching_minimiser():
    from interpolant_rl import objectives as obj

    base, steps = _gaussian_base(), 10
    scheme = obj.QAMReferenceAdjointMatching(steps)
    _, controls = _fixed_point_controls(scheme, base)

    def fine(t, x, cond):  # v_beta + c_i at grid time t_i
        return base(t, x, cond) + controls[jnp.round(t * steps).astype(int)]

    loss, _ = obj.adjoint_matching_loss(
        scheme, fine, base, lambda c, a: SLOPE, TILT_TAU, 32, 2, None, jr.key(1)
    )
    # every residual vanishes on every sampled path: zero loss (the regression's global minimum)
    assert float(loss) < 1e-8
