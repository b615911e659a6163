"""Annealed Langevin dynamics and NC-LQL: mode weights of a log-sum-exp critic's Boltzmann
distribution (annealed vs plain Langevin), a Gaussian target's moments against the exact law of
the discrete chain and the closed form, the noise-level loss by hand, and the agent through the
registry and the command line."""

import dataclasses

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from experiments import run
from interpolant_rl import agents, annealed_langevin_sample, LangevinSchedule, nn, objectives
from interpolant_rl.testing import GaussianMixture


# --- (a) a log-sum-exp critic: Boltzmann weights ---------------------------------------------

ALPHA = 0.5  # temperature of exp(Q / alpha)
WEIGHTS = np.array([0.2, 0.8])
MEANS = np.array([[-0.6, -0.6], [0.6, 0.6]])
SPREAD = 0.1  # each mode's standard deviation: the modes are 17 of them apart
N_MODES = 1000
ANNEALED = LangevinSchedule(1.0, 0.05, num_levels=15, steps_per_level=100, step_size=1e-3)
PLAIN = LangevinSchedule(0.05, 0.05, num_levels=1, steps_per_level=1500, step_size=1e-3)


def mixture_critic(schedule):
    r"""$Q_\sigma(a) = \alpha \log \sum_i w_i \mathcal N(a; \mu_i, (s^2 + \sigma^2) I)$: the
    log-sum-exp critic smoothed at the level's noise, so $e^{Q_\sigma/\alpha}$ is the
    mixture convolved with $\mathcal N(0, \sigma^2 I)$ (exactly what a noise-conditioned critic
    learns in the limit); its Boltzmann distribution at $\sigma \to 0$ has weights $w$."""

    def critic(t, action):
        var = SPREAD**2 + schedule.sigma(t) ** 2
        covs = jnp.broadcast_to(var * jnp.eye(2), (2, 2, 2))
        return ALPHA * GaussianMixture(WEIGHTS, MEANS, covs).log_prob(action)

    return critic


def mode_fractions(schedule, starts, noise):
    critic = mixture_critic(schedule)

    def score(t, x, cond):  # grad log exp(Q / alpha)
        return jax.grad(critic, argnums=1)(t, x) / ALPHA

    sample = jax.jit(jax.vmap(lambda x0, z: annealed_langevin_sample(schedule, score, x0, noise=z)))
    samples = np.asarray(sample(starts, noise))
    nearest = np.argmin(((samples[:, None, :] - MEANS) ** 2).sum(-1), axis=1)
    return np.bincount(nearest, minlength=2) / len(samples)


def test_annealed_langevin_recovers_the_mode_weights_plain_langevin_does_not():
    # the same starts (uniform on [-1, 1]^2) and the same 1500 standard normal draws per chain
    starts = jr.uniform(jr.key(0), (N_MODES, 2), minval=-1.0, maxval=1.0)
    noise = jr.normal(jr.key(1), (N_MODES, 1500, 2))
    annealed = mode_fractions(ANNEALED, starts, noise)
    plain = mode_fractions(PLAIN, starts, noise)
    # Monte-Carlo error of a mode's count: binomial, std sqrt(w (1 - w) / n) = 0.013
    tolerance = 4 * np.sqrt(WEIGHTS * (1 - WEIGHTS) / N_MODES)
    assert np.all(np.abs(annealed - WEIGHTS) <= tolerance), (annealed, tolerance)
    # plain Langevin at the smallest noise never crosses the barrier: each chain stays in the
    # mode of its start's basin, so both modes get about half (0.5 vs 0.2: 30 standard errors)
    assert np.all(np.abs(plain - WEIGHTS) > 10 * tolerance / 4), plain
    assert np.all(np.abs(plain - 0.5) <= tolerance), plain


# --- (b) a Gaussian target: exact moments ----------------------------------------------------

MEAN = np.array([0.3, -0.2])
COV = np.array([[0.5, 0.2], [0.2, 0.3]])
GAUSS = LangevinSchedule(1.0, 0.05, num_levels=10, steps_per_level=100, step_size=1e-3)
N_GAUSS = 4000


def chain_moments(schedule, mean0, cov0):
    """The exact law of the discrete chain from N(mean0, cov0): each step is affine,
    x' = A x + b + sqrt(eps) z, so mean' = A mean + b and cov' = A cov A^T + eps I."""
    mean, cov = mean0.copy(), cov0.copy()
    levels = zip(np.asarray(schedule.times()), np.asarray(schedule.step_sizes()), strict=True)
    for t, eps in levels:
        sigma = float(schedule.sigma(t))
        precision = np.linalg.inv(COV + sigma**2 * np.eye(2))
        a = np.eye(2) - 0.5 * eps * precision
        b = 0.5 * eps * precision @ MEAN
        for _ in range(schedule.steps_per_level):
            mean, cov = a @ mean + b, a @ cov @ a.T + eps * np.eye(2)
    return mean, cov


def test_gaussian_target_moments_match_the_chain_and_the_closed_form():
    precision = lambda t: jnp.linalg.inv(COV + GAUSS.sigma(t) ** 2 * jnp.eye(2))  # noqa: E731

    def score(t, x, cond):  # grad log N(MEAN, COV + sigma(t)^2 I)
        return -precision(t) @ (x - MEAN)

    starts = jr.uniform(jr.key(2), (N_GAUSS, 2), minval=-1.0, maxval=1.0)
    keys = jr.split(jr.key(3), N_GAUSS)
    sample = jax.jit(jax.vmap(lambda x0, k: annealed_langevin_sample(GAUSS, score, x0, key=k)))
    samples = np.asarray(sample(starts, keys), dtype=np.float64)
    mean, cov = samples.mean(0), np.cov(samples.T)

    chain_mean, chain_cov = chain_moments(GAUSS, np.zeros(2), np.eye(2) / 3)
    # Monte-Carlo tolerances: 4 standard errors of the sample mean and covariance entries
    mean_tol = 4 * np.sqrt(np.diag(chain_cov) / N_GAUSS)
    d = np.sqrt(np.diag(chain_cov))
    cov_tol = 4 * np.sqrt((np.outer(d, d) ** 2 + chain_cov**2) / N_GAUSS)
    assert np.all(np.abs(mean - chain_mean) <= mean_tol), (mean, chain_mean)
    assert np.all(np.abs(cov - chain_cov) <= cov_tol), (cov, chain_cov)

    # the closed form: N(MEAN, COV + sigma_min^2 I); the chain's distance to it is the
    # discretisation (and finite-time) error, which must be small
    target_cov = COV + GAUSS.sigma_min**2 * np.eye(2)
    discretisation = np.abs(chain_cov - target_cov)
    assert np.all(np.abs(chain_mean - MEAN) < 1e-3)
    assert np.all(discretisation < 0.02 * np.max(np.abs(target_cov)) + 1e-3), discretisation
    assert np.all(np.abs(mean - MEAN) <= mean_tol + 1e-3)
    assert np.all(np.abs(cov - target_cov) <= cov_tol + discretisation)


def test_schedule_levels_and_errors():
    schedule = LangevinSchedule(0.1, 0.001, num_levels=3, steps_per_level=2, step_size=1e-4)
    np.testing.assert_allclose(schedule.times(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(schedule.sigma(schedule.times()), [0.1, 0.01, 0.001], rtol=1e-5)
    np.testing.assert_allclose(schedule.step_sizes(), [1.0, 1e-2, 1e-4], rtol=1e-4)
    x = annealed_langevin_sample(
        schedule,
        lambda t, x, c: 100.0 * jnp.ones(2),
        jnp.zeros(2),
        key=jr.key(0),
        bounds=(-1.0, 1.0),
    )
    assert np.all(np.abs(np.asarray(x)) <= 1.0)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        LangevinSchedule(0.1, 0.2, num_levels=3, steps_per_level=2, step_size=1e-4)
    with pytest.raises(ValueError, match="noise must have shape"):
        annealed_langevin_sample(schedule, lambda t, x, c: x, jnp.zeros(2), noise=jnp.zeros((5, 2)))


# --- (c) the noise-level loss by hand --------------------------------------------------------


def test_noise_level_loss_by_hand():
    ensemble = nn.NoiseConditionedEnsemble(2, 3, 4, 1, num_critics=2, key=jr.key(4))
    schedule = LangevinSchedule(0.1, 0.001, num_levels=10, steps_per_level=2, step_size=1e-4)
    obs = np.asarray(jr.normal(jr.key(5), (3, 3)))
    actions = np.asarray(jr.uniform(jr.key(6), (3, 2), minval=-1, maxval=1))
    noise = np.asarray(jr.normal(jr.key(7), (3, 2)))
    times = np.array([0.0, 4 / 9, 8 / 9])
    targets = np.array([0.5, -1.0, 2.0])
    weights = np.array([1.0, 0.0, 1.0])
    loss = objectives.noise_level_loss(
        ensemble.batch_values,
        schedule,
        jnp.asarray(actions),
        jnp.asarray(obs),
        jnp.asarray(targets),
        jnp.asarray(times),
        jnp.asarray(noise),
        weights=jnp.asarray(weights),
    )
    total = 0.0
    for i in range(3):
        sigma = 0.1 ** (1 - times[i]) * 0.001 ** times[i]
        perturbed = jnp.asarray(actions[i] + sigma * noise[i])
        values = np.asarray(ensemble(times[i], perturbed, jnp.asarray(obs[i])))
        total += weights[i] * np.mean((values - targets[i]) ** 2)
    np.testing.assert_allclose(float(loss), total / weights.sum(), rtol=1e-5)


# --- (d) the agent ---------------------------------------------------------------------------

OBS, ACT, BATCH = 3, 2, 8


@pytest.fixture(scope="module")
def tiny_config():
    config = agents.resize(agents.default_config("nc_lql"), width=16, depth=1, num_critics=2)
    return dataclasses.replace(config, num_levels=3, steps_per_level=2)


def test_nc_lql_builds_updates_and_acts_through_the_registry(tiny_config):
    import helpers

    agent = agents.make_agent("nc_lql", OBS, ACT, jr.key(0), tiny_config)
    batch = helpers.random_batch(jr.key(1), (2,), BATCH, OBS, ACT)
    before = jax.tree.leaves(agent.critic.online.model)[0]
    agent, metrics = agent.update(batch, jr.key(2))
    assert {"critic_loss", "level_loss"} <= set(metrics)
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert not np.allclose(before, jax.tree.leaves(agent.critic.online.model)[0])
    actions = agent.act(jr.normal(jr.key(3), (5, OBS)), jr.key(4))
    assert actions.shape == (5, ACT) and np.all(np.abs(np.asarray(actions)) <= 1.0)
    # best of N particles, and plain LQL (one level: no noise-level step)
    best = dataclasses.replace(tiny_config, num_particles=3)
    best_agent = agents.make_agent("nc_lql", OBS, ACT, jr.key(0), best)
    assert isinstance(best_agent.acting_policy(), agents.BestOfN)
    plain = dataclasses.replace(tiny_config, num_levels=1)
    _, plain_metrics = agents.make_agent("nc_lql", OBS, ACT, jr.key(0), plain).update(
        batch, jr.key(2)
    )
    assert "level_loss" not in plain_metrics


def test_nc_lql_configuration_and_command_line():
    with pytest.raises(ValueError, match="tau"):
        agents.nc_lql.NCLQLConfig(tau=0.0)
    with pytest.raises(ValueError, match="sigma_min"):
        agents.nc_lql.NCLQLConfig(sigma_min=1.0)
    config, agent = run.parse(["--agent", "nc_lql", "--nc-lql.num-levels", "4"])
    config = run.resolve(config)
    assert agent.num_levels == 4 and config.offline_steps == 0
    assert config.random_action_steps == 1000
    paper = run.resolve(run.RunConfig(agent="nc_lql", preset="paper"))
    assert paper.offline_steps == 0 and paper.random_action_steps == 30_000
