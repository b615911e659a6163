"""Run presets: the training schedule and network sizes of the main job, per machine class.

`"cpu"` is sized for a 2-core machine (minutes); `"paper"` is the QAM protocol (1M offline + 500k
online steps, 4 x 512 networks, K = 10; needs a GPU). `experiments/run.py --preset` applies them
to every field the command line leaves unset; benchmarks and tests read them from here.
"""

from typing import Any


PRESETS = {
    "cpu": dict(
        dataset_episodes=100,
        dataset_steps=100_000,
        offline_steps=20_000,
        online_steps=0,
        random_action_steps=0,
        batch_size=256,
        width=256,
        depth=2,
        num_critics=2,
        eval_interval=5000,
        eval_episodes=10,
    ),
    "paper": dict(
        dataset_episodes=1000,
        dataset_steps=1_000_000,
        offline_steps=1_000_000,
        online_steps=500_000,
        random_action_steps=0,
        batch_size=256,
        width=512,
        depth=4,
        num_critics=10,
        eval_interval=50_000,
        eval_episodes=50,
    ),
}
"""The presets by name: every `experiments/run.py` field they fill when it is left unset."""


# Agents whose schedule differs from the presets'. RLPD is online only (the protocol: no offline
# phase, 5000 random-action steps before training, 50/50 offline/online batches); on CPU it gets
# the offline phase's budget of 20k steps as online steps, of which the first 1000 (5 %: five
# 200-step cube-single episodes) are random; the paper's 1 % would be a single episode.
AGENT_PRESETS = {
    "rlpd": {
        "cpu": dict(offline_steps=0, online_steps=20_000, random_action_steps=1000),
        "paper": dict(offline_steps=0, random_action_steps=5000),
    },
    # NC-LQL is online only (no policy to pretrain): RLPD's CPU schedule; on the paper preset
    # the authors' code's 30k random-action steps (its start_step) before the first update.
    "nc_lql": {
        "cpu": dict(offline_steps=0, online_steps=20_000, random_action_steps=1000),
        "paper": dict(offline_steps=0, random_action_steps=30_000),
    },
    # SOM is online only (its target is built from the critic, there is nothing to pretrain):
    # RLPD's schedule (ours; the paper's warm-up is not known here).
    "som": {
        "cpu": dict(offline_steps=0, online_steps=20_000, random_action_steps=1000),
        "paper": dict(offline_steps=0, random_action_steps=5000),
    },
}
"""Agents whose schedule differs from the presets': agent -> preset -> values on top."""


def preset(name: str, agent: str) -> dict[str, Any]:
    """The values of preset `name` for `agent`: the preset's, with the agent's own schedule
    (`AGENT_PRESETS`) on top. Raises `ValueError` naming the presets for an unknown `name`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return {**PRESETS[name], **AGENT_PRESETS.get(agent, {}).get(name, {})}
