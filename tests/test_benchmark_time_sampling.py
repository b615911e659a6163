"""benchmarks/time_sampling.py's two measuring pieces: the exact targets it computes in NumPy
(instead of the mixture's JAX methods, whose batched LAPACK solves deadlocked on two cores) agree
with those methods on every problem, and the "best 10-bin law" ratio is the closed form
$(\\frac1K\\sum_k\\sqrt{G_k})^2/\\frac1K\\sum_k G_k$: 1 when every bin's gradient is alike, the
Cauchy-Schwarz value when they differ."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from benchmarks import time_sampling


@pytest.mark.parametrize("problem", list(time_sampling.PROBLEMS))
def test_exact_targets_agree_with_the_mixture(problem):
    mixture = time_sampling.PROBLEMS[problem]["mixture"]
    t_key, x0_key, x1_key = jr.split(jr.key(0), 3)
    t = jr.uniform(t_key, (256,))
    x0, x1 = jr.normal(x0_key, (256, 2)), mixture.sample(x1_key, 256)
    x_t, targets = time_sampling.exact_targets(problem, t, x0, x1)
    if time_sampling._loss_kind(problem) == "denoising":
        interpolant = time_sampling.VP
        expected = jax.vmap(lambda t, x: mixture.noise_posterior_mean(interpolant, t, x))(t, x_t)
    else:
        interpolant = time_sampling.INTERPOLANT
        expected = jax.vmap(mixture.velocity_field(interpolant))(t, x_t)
    np.testing.assert_allclose(x_t, jax.vmap(interpolant.interpolate)(x0, x1, t), atol=1e-6)
    np.testing.assert_allclose(targets, expected, atol=1e-4)


def test_best_binned_ratio_closed_form():
    """A one-parameter 'network' w whose per-sample loss is (c(t) w)^2 / 2 has gradient
    c(t)^2 w, so G_k is the bin mean of c^4 w^2: constant c gives 1; c^2 = 1 on the first half
    of the bins and 3 on the second gives (1 + 3)^2 / 4 / ((1 + 9) / 2) = 0.8."""

    def loss(c2, w, x0, x1):
        return 0.5 * c2 * (w["w"] * (1.0 + 0.0 * jnp.sum(x0 + x1))) ** 2

    def constant(w, t, x0, x1):
        return loss(1.0, w, x0, x1)

    def two_levels(w, t, x0, x1):
        return loss(jnp.where(t < 0.5, 1.0, 3.0), w, x0, x1)

    x = jnp.zeros((1000, 2))
    for per_sample, expected in ((constant, 1.0), (two_levels, 0.8)):
        ratio = time_sampling.best_binned_ratio(per_sample, {"w": jnp.array(2.0)}, jr.key(1), x, x)
        assert float(ratio) == pytest.approx(expected, rel=1e-5)
