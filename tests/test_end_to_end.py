"""Every registered agent trains offline then online on a small generated OGBench dataset, with
chunked actions, evaluation in the real environment, and a checkpoint."""

import dataclasses

import jax
import numpy as np
import pytest

from interpolant_rl import agents, data, train


@pytest.fixture(scope="module")
def ogbench_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ogbench-e2e")
    return data.load_ogbench(
        "cube-single-play-singletask-task1-v0", directory, num_episodes=2, seed=0
    )


@pytest.mark.parametrize("name", agents.available_agents())
def test_offline_then_online(ogbench_data, tmp_path, name):
    env, dataset, _ = ogbench_data
    horizon = 5
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    config = agents.override(config, horizon=horizon, discount=0.99)
    if name == "moma_ql":
        config = dataclasses.replace(config, particles=2)
    agent = agents.make_agent(
        name, dataset.obs_dim, dataset.action_dim * horizon, jax.random.key(0), config
    )
    schedule = train.TrainConfig(
        offline_steps=4,
        online_steps=10,
        batch_size=8,
        updates_per_call=2,
        eval_interval=10_000,
        eval_episodes=1,
        checkpoint_interval=10_000,
        seed=0,
    )
    agent, evals = train.train(agent, dataset, env, schedule, tmp_path)
    assert len(evals) == 1 and evals[0]["step"] == 14
    assert 0.0 <= evals[0]["success"] <= 1.0 and np.isfinite(evals[0]["episode_return"])
    assert train.read_checkpoint_header(tmp_path / "checkpoint.eqx")["step"] == 14
    action = agent.act(np.asarray(dataset.observations[0]), jax.random.key(1))
    assert action.shape == (dataset.action_dim * horizon,)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)
