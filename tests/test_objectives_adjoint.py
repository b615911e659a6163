"""Flow matching and adjoint matching reach their known optima on tiny problems."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import interpolant_rl as ir
from interpolant_rl import objectives as obj
from interpolant_rl.testing import GaussianMixture


INTERP = ir.LinearInterpolant()
# 1-D Gaussian behaviour policy N(0, 0.5^2), linear critic Q(a) = a, tau = 1: the tilt is
# N(0 + tau * 0.25 * 1, 0.5^2) — mean 0.25, same spread.
BASE = GaussianMixture([1.0], [[0.0]], [[[0.25]]])
TILT = BASE.tilt([[0.0]], [1.0], 1.0)
SIGMA = 0.5


class ResidualVelocity(eqx.Module):
    """Fine-tuned velocity = base velocity + a small network (zero at initialisation)."""

    base: object
    net: eqx.nn.MLP

    def __call__(self, t, x, cond):
        return self.base(t, x, None) + self.net(jnp.concatenate([x, jnp.atleast_1d(t)]))


def _train(loss_fn, model, trainable, steps, learning_rate):
    schedule = optax.cosine_decay_schedule(learning_rate, steps, 0.03)
    optimiser = optax.adam(schedule)
    state = optimiser.init(eqx.filter(model, trainable))

    @eqx.filter_jit
    def step(model, state, key):
        diff, rest = eqx.partition(model, trainable)
        grads = jax.grad(lambda d: loss_fn(eqx.combine(d, rest), key))(diff)
        updates, state = optimiser.update(grads, state, diff)
        return eqx.combine(eqx.apply_updates(diff, updates), rest), state

    for i in range(steps):
        model, state = step(model, state, jax.random.key(i))
    return model


def _ode_policy_samples(velocity, n=8192):
    x0 = jax.random.normal(jax.random.key(123), (n, 1))
    ode = ir.ProbabilityFlowODE(INTERP, velocity)
    return jax.jit(jax.vmap(lambda z: ir.sample(ode, z, num_steps=50)))(x0)


def test_flow_matching_learns_the_behaviour_distribution():
    data = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.1]], [[0.1]]])

    class Field(eqx.Module):
        net: eqx.nn.MLP

        def __call__(self, t, x, cond):
            return self.net(jnp.concatenate([x, jnp.atleast_1d(t)]))

    field = Field(eqx.nn.MLP(2, 1, 64, 2, activation=jax.nn.gelu, key=jax.random.key(0)))

    def loss_fn(model, key):
        k1, k2 = jax.random.split(key)
        return obj.flow_matching_loss(INTERP, model, data.sample(k1, 512), None, k2)

    field = _train(loss_fn, field, eqx.is_inexact_array, 1500, 3e-3)
    samples = np.asarray(_ode_policy_samples(field))
    # Bimodal data: mean 0, variance 1.1; the learned flow gets both modes and the spread.
    assert abs(samples.mean()) < 0.1
    assert abs(samples.var() - 1.1) < 0.15
    assert 0.35 < np.mean(samples < 0) < 0.65


@pytest.mark.parametrize(
    "scheme",
    [
        obj.MemorylessAdjointMatching(num_steps=50, regularisation=0.01),
        obj.QAMReferenceAdjointMatching(num_steps=10),
    ],
    ids=["memoryless", "qam-reference"],
)
def test_adjoint_matching_reaches_the_exact_tilt(scheme):
    """QAM on a 1-D Gaussian base with a linear critic: the fine-tuned flow's samples have the
    exact tilted mean within 0.1 sigma and keep the spread."""
    base = BASE.velocity_field(INTERP)
    net = eqx.nn.MLP(2, 1, 32, 2, activation=jax.nn.gelu, key=jax.random.key(0))
    net = eqx.tree_at(lambda m: m.layers[-1].weight, net, jnp.zeros_like(net.layers[-1].weight))
    fine = ResidualVelocity(base, net)
    trainable = eqx.tree_at(
        lambda f: f.net,
        jax.tree_util.tree_map(lambda _: False, fine),
        jax.tree_util.tree_map(eqx.is_inexact_array, fine.net),
    )

    def action_gradient(cond, action):
        return jax.grad(lambda a: jnp.sum(a))(action)  # Q(a) = a

    def loss_fn(model, key):
        loss, _ = obj.adjoint_matching_loss(
            scheme, model, base, action_gradient, 1.0, 256, 1, None, key
        )
        return loss

    fine = _train(loss_fn, fine, trainable, 600, 3e-3)
    samples = np.asarray(_ode_policy_samples(fine))
    exact_mean = float(TILT.mean()[0])
    assert exact_mean == pytest.approx(0.25)
    assert abs(samples.mean() - exact_mean) < 0.1 * SIGMA
    assert abs(samples.std() - SIGMA) < 0.1 * SIGMA


def test_adjoint_matching_gradient_reaches_only_the_fine_tuned_field():
    base_net = eqx.nn.MLP(2, 1, 8, 1, key=jax.random.key(1))
    fine_net = eqx.nn.MLP(2, 1, 8, 1, key=jax.random.key(2))

    def field(net):
        return lambda t, x, cond: net(jnp.concatenate([x, jnp.atleast_1d(t)]))

    def loss(fine_net, base_net):
        value, _ = obj.adjoint_matching_loss(
            obj.MemorylessAdjointMatching(num_steps=4),
            field(fine_net),
            field(base_net),
            lambda cond, a: -a,
            1.0,
            8,
            1,
            None,
            jax.random.key(0),
        )
        return value

    fine_grad, base_grad = eqx.filter_grad(lambda nets: loss(*nets))((fine_net, base_net))
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(base_grad))
    assert any(float(jnp.max(jnp.abs(g))) > 0.0 for g in jax.tree_util.tree_leaves(fine_grad))


def test_basic_adjoint_matching_loss_equals_lean_when_fine_is_base():
    base = BASE.velocity_field(INTERP)
    scheme = obj.MemorylessAdjointMatching(num_steps=8)
    args = (lambda cond, a: jnp.ones_like(a), 1.0, 16, 1, None, jax.random.key(3))
    lean, _ = obj.adjoint_matching_loss(scheme, base, base, *args)
    basic, _ = obj.basic_adjoint_matching_loss(scheme, base, base, *args)
    np.testing.assert_allclose(lean, basic, rtol=1e-5)
