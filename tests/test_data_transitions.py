"""Action chunks and replay buffers against a hand-computed example."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl.data import chunk_batch, mixed_batch, ReplayBuffer, sample_chunks, Transitions


def table():
    # two episodes: rows 0-2 (time limit at 2) and rows 3-5; the task terminates at row 2
    n = 6
    obs = np.arange(n, dtype=float)[:, None] * np.ones((1, 2))
    return Transitions(
        observations=obs,
        actions=np.stack([np.arange(n), -np.arange(n)], axis=1) / 10.0,
        rewards=np.arange(1, n + 1, dtype=float),
        masks=[1, 1, 0, 1, 1, 1],
        next_observations=obs + 0.5,
        episode_ends=[0, 0, 1, 0, 0, 1],
    )


def test_chunks_by_hand():
    batch = chunk_batch(table(), jnp.array([0, 1, 2, 5]), horizon=2, discount=0.5)
    np.testing.assert_allclose(batch.rewards[:2], [1 + 0.5 * 2, 2 + 0.5 * 3])
    np.testing.assert_allclose(batch.masks[:2], [1, 0])  # running minimum
    np.testing.assert_allclose(batch.next_observations[:2, 0], [1.5, 2.5])  # after the chunk
    np.testing.assert_allclose(batch.actions[0], [0.0, -0.0, 0.1, -0.1])  # flattened chunk
    # start 1 ends exactly at the episode end (valid); start 2 crosses it; start 5 runs off the end
    np.testing.assert_allclose(batch.valid, [1, 1, 0, 0])
    one = chunk_batch(table(), jnp.arange(6), horizon=1, discount=0.5)
    np.testing.assert_allclose(one.valid, np.ones(6))
    np.testing.assert_allclose(one.rewards, np.arange(1, 7))


def test_next_actions_are_the_datas_next_chunk_within_the_episode():
    # rows 0-2 and 3-5 are two episodes; a next chunk is known only inside its episode
    one = chunk_batch(table(), jnp.arange(6), horizon=1, discount=0.5)
    np.testing.assert_allclose(one.next_actions[:, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    np.testing.assert_allclose(one.next_valid, [1, 1, 0, 1, 1, 0])  # rows 2 and 5 end episodes
    two = chunk_batch(table(), jnp.array([0, 1, 3, 4]), horizon=2, discount=0.5)
    np.testing.assert_allclose(two.next_actions[0], [0.2, -0.2, 0.3, -0.3])  # rows 2, 3 ...
    # ... but row 2 ends the episode, so start 0's next chunk (rows 2-3) crosses it; start 1's
    # chunk ends the episode; start 3's next chunk (5, off the table) runs out; start 4 invalid
    np.testing.assert_allclose(two.next_valid, [0, 0, 0, 0])
    three = Transitions(
        np.zeros((8, 1)),
        np.arange(8.0)[:, None] / 10,
        np.zeros(8),
        np.ones(8),
        np.zeros((8, 1)),
        [0] * 7 + [1],
    )
    chunks = chunk_batch(three, jnp.array([0, 3, 4, 5]), horizon=2, discount=1.0)
    np.testing.assert_allclose(chunks.next_actions[:3], [[0.2, 0.3], [0.5, 0.6], [0.6, 0.7]])
    # start 4's next chunk (6, 7) ends the episode at its last step: known; start 5's crosses
    np.testing.assert_allclose(chunks.next_valid, [1, 1, 1, 0])
    limited = chunk_batch(three, jnp.array([0, 2]), horizon=2, discount=1.0, limit=5)
    np.testing.assert_allclose(limited.next_valid, [1, 0])  # rows 4-5: row 5 is not filled


def test_sampling_is_jittable_and_in_range():
    batch = jax.jit(lambda k: sample_chunks(table(), k, 64, 3, 0.9))(jr.key(0))
    assert batch.actions.shape == (64, 6)
    assert np.all(np.isin(np.asarray(batch.valid), [0.0, 1.0]))


def test_replay_buffer_ring_and_chunks_across_the_write_position():
    buffer = ReplayBuffer.create(obs_dim=2, action_dim=2, capacity=4)
    add = jax.jit(
        lambda b, i: b.add(jnp.full(2, i), jnp.full(2, i / 10), i, 1.0, jnp.full(2, i + 0.5), 0.0)
    )
    for i in range(6):
        buffer = add(buffer, float(i))
    assert int(buffer.size) == 4 and int(buffer.position) == 2
    np.testing.assert_allclose(buffer.storage.rewards, [4, 5, 2, 3])  # 4 and 5 overwrote 0 and 1
    batch = buffer.sample(jr.key(0), 256, horizon=2, discount=1.0)
    starts = np.asarray(batch.observations[:, 0]).astype(int)
    valid = np.asarray(batch.valid)
    # chunks (2,3) and (4,5) are real; starting at 5 (the newest) or 3 (the array's end) is not
    assert set(starts[valid == 1]) == {2, 4}
    assert set(starts[valid == 0]) == {3, 5}
    np.testing.assert_allclose(np.asarray(batch.rewards)[starts == 4], 9.0)
    # a next chunk must also stay clear of the write position and inside the array (rows
    # [4, 5, 2, 3]): chunk (4, 5)'s next would be the old rows 2, 3; chunk (2, 3)'s runs off
    assert not np.any(np.asarray(batch.next_valid))
    ones = buffer.sample(jr.key(1), 256, horizon=1, discount=1.0)
    starts = np.asarray(ones.observations[:, 0]).astype(int)
    next_valid = np.asarray(ones.next_valid)
    assert set(starts[next_valid == 1]) == {2, 4}  # 5 is the newest, 3 the array's last row
    np.testing.assert_allclose(np.asarray(ones.next_actions)[starts == 4][0], [0.5, 0.5])


def test_mixed_batch_and_bad_tables():
    t = table()
    batch = mixed_batch(
        chunk_batch(t, jnp.array([0]), 1, 0.9), chunk_batch(t, jnp.array([3]), 1, 0.9)
    )
    np.testing.assert_allclose(batch.rewards, [1, 4])
    with pytest.raises(ValueError, match="NaN or inf"):
        Transitions(
            np.zeros((2, 1)),
            np.zeros((2, 1)),
            [0.0, np.nan],
            np.ones(2),
            np.zeros((2, 1)),
            np.zeros(2),
        )
    with pytest.raises(ValueError, match="inconsistent shapes"):
        Transitions(
            np.zeros((2, 1)),
            np.zeros((3, 1)),
            np.zeros(2),
            np.ones(2),
            np.zeros((2, 1)),
            np.zeros(2),
        )
    with pytest.raises(ValueError, match="empty"):
        Transitions(
            np.zeros((0, 1)),
            np.zeros((0, 1)),
            np.zeros(0),
            np.ones(0),
            np.zeros((0, 1)),
            np.zeros(0),
        )
