"""benchmarks/d4rl_reduced.py end to end at a tiny budget: behaviour policies trained here, a
dataset of 40 transitions built from them, two `run.py` programs of two seeds (ReBRAC offline,
and offline then online: the offline-to-online row's machinery, with the cheapest agent to
compile), the table written, finished runs not run again, and a suite without behaviour
policies named as skipped."""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import d4rl_reduced


TINY = dict(
    dataset_steps=40,
    offline_steps=20,
    online_steps=0,
    eval_interval=10,
    eval_episodes=1,
    overrides=(("width", 16), ("depth", 1), ("batch_size", 16), ("updates_per_call", 10)),
)
SUITES = {
    "hopper-medium": d4rl_reduced.Suite(env="hopper-medium-v2", agents=("rebrac",), **TINY),
    "walker2d-medium": d4rl_reduced.Suite(env="walker2d-medium-v2", agents=("rebrac",), **TINY),
    "hopper-medium-o2o": d4rl_reduced.Suite(
        env="hopper-medium-v2", agents=("rebrac",), **dict(TINY, online_steps=20)
    ),
}
BENCHMARK_SUITES = d4rl_reduced.SUITES  # the real ones, before a test replaces them
MISSING = "missing behaviour policies for walker2d (train them with experiments/train_behaviour.py)"


@pytest.fixture(scope="module")
def behaviour_dir(tmp_path_factory):
    """Tiny hopper behaviour policies (40 SAC steps; the first evaluated snapshot is medium)."""
    from interpolant_rl import agents, train

    config = dataclasses.replace(
        train.SAC_CONFIG,
        actor=agents.NetworkConfig(16, 1),
        critic=dataclasses.replace(train.SAC_CONFIG.critic, width=16, depth=1),
    )
    directory = tmp_path_factory.mktemp("behaviour")
    train.train_behaviour_policy(
        "hopper",
        directory,
        online_steps=40,
        evaluation_interval=20,
        evaluation_episodes=1,
        random_action_steps=20,
        medium_score=-100.0,
        config=config,
    )
    return directory


def test_the_benchmark_runs_skips_finished_runs_and_names_missing_policies(
    tmp_path, behaviour_dir, monkeypatch, capsys
):
    monkeypatch.setattr(d4rl_reduced, "SUITES", SUITES)
    results = tmp_path / "results" / "d4rl_reduced"
    argv = [
        "--seeds", "0", "1",
        "--behaviour-dir", str(behaviour_dir),
        "--data-dir", str(tmp_path / "data"),
        "--runs-dir", str(tmp_path / "runs"),
        "--results", str(results),
    ]  # fmt: skip
    launched = []
    run = subprocess.run

    def counted(command, **kwargs):
        launched.append(command)
        return run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    assert d4rl_reduced.main(argv) == 0
    err = capsys.readouterr().err
    assert f"[d4rl_reduced] walker2d-medium: {MISSING}; skipped" in err.splitlines()
    # one program per (suite, agent), its two seeds together
    assert len(launched) == 2 and all(c[c.index("--num-seeds") + 1] == "2" for c in launched)
    assert "--behaviour-dir" in launched[0] and "--dataset-steps" in launched[0]
    assert (tmp_path / "data" / "hopper-medium-v2.hdf5").exists()

    result = json.loads(results.with_suffix(".json").read_text())
    assert list(result["suites"]) == ["hopper-medium", "hopper-medium-o2o"]
    assert result["skipped"] == {"walker2d-medium": MISSING}
    offline = result["suites"]["hopper-medium"]["agents"]["rebrac"]
    assert offline["offline_score"]["n"] == 2 and offline["online_score"] is None
    assert list(offline["score_by_step"]) == ["10", "20"]
    assert offline["paper_moma_ql"] is None
    o2o = result["suites"]["hopper-medium-o2o"]["agents"]["rebrac"]
    assert o2o["offline_score"]["n"] == o2o["online_score"]["n"] == 2
    assert list(o2o["score_by_step"]) == ["10", "20", "30", "40"]
    for name, agent in (("hopper-medium", "rebrac"), ("hopper-medium-o2o", "rebrac")):
        for seed in (0, 1):
            copy = results / "runs" / name / f"{agent}-seed{seed}.json"
            assert json.loads(copy.read_text())["config"]["seed"] == seed

    markdown = results.with_suffix(".md").read_text()
    assert "### hopper-medium: `hopper-medium-v2`" in markdown
    assert "walker2d-medium: `" not in markdown  # only what ran has a table
    assert f"Skipped: walker2d-medium ({MISSING})." in markdown
    assert "comparable in kind" in markdown and "not number for number" in markdown
    assert "### hopper-medium-o2o: `hopper-medium-v2`" in markdown
    assert "then 20 online environment steps" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| rebrac |")]
    assert len(rows) == 2 and all(row.endswith("| not transcribed |") for row in rows)
    offline_cell, online_cell = o2o["offline_score"], o2o["online_score"]
    assert rows[1].startswith(
        f"| rebrac | {offline_cell['mean']:.1f} ± {offline_cell['ci95']:.1f} | "
        f"{online_cell['mean']:.1f} ± {online_cell['ci95']:.1f} |"
    )

    # again: every run has finished, nothing is launched and the table is the same
    assert d4rl_reduced.main(argv) == 0
    assert len(launched) == 2
    assert results.with_suffix(".md").read_text() == markdown
    # --report and a selection of suites: only the selected suite's skip is named
    assert d4rl_reduced.main([*argv, "--report", "--suites", "hopper-medium"]) == 0
    again = json.loads(results.with_suffix(".json").read_text())
    assert again["skipped"] == {} and list(again["suites"]) == list(result["suites"])


def test_the_paper_column_holds_only_the_transcribed_moma_ql_scores():
    o2o = BENCHMARK_SUITES["halfcheetah-medium-o2o"]
    assert o2o.agents == ("moma_ql",) and o2o.online_steps > 0
    entry = d4rl_reduced.paper("halfcheetah-medium-o2o", o2o, "moma_ql")
    assert d4rl_reduced._paper_cell(entry, online=True) == "72.6 → 83.1"
    walker = BENCHMARK_SUITES["walker2d-medium"]
    entry = d4rl_reduced.paper("walker2d-medium", walker, "moma_ql")
    assert d4rl_reduced._paper_cell(entry, online=False) == "95.6 (O2O table, before online)"
    for agent in ("ofql", "fql", "rebrac"):
        assert d4rl_reduced.paper("walker2d-medium", walker, agent) is None
    assert set(walker.agents) == {"moma_ql", "ofql", "fql", "rebrac"}


def test_kept_runs_with_another_agent_configuration_are_stale():
    # a copy records the configuration run.py built; a default changed since (ReBRAC's Gym
    # values) makes it stale, a field added since (read at its default) does not
    import argparse

    from benchmarks import ogbench_reduced
    from experiments import run

    args = argparse.Namespace(workers=1, data_dir=None, behaviour_dir=None)
    suite = d4rl_reduced.SUITES["hopper-medium"]
    flags = ogbench_reduced._command(args, suite, "rebrac", 0, 1, Path("unused"))[2:]
    current = repr(run.parse(flags)[1])
    assert "critic_alpha=0.01" in current
    assert not ogbench_reduced.stale(args, suite, "rebrac", [dict(agent_config=current)])
    # recorded before the critic penalty existed, with the QAM study's target noise
    older = current.replace("critic_alpha=0.01, ", "").replace("actor_noise=0.2", "actor_noise=0.0")
    assert ogbench_reduced.stale(args, suite, "rebrac", [dict(agent_config=older)])
    added = current.replace(", bc_reduction='sum'", "")  # recorded before the field existed
    assert not ogbench_reduced.stale(args, suite, "rebrac", [dict(agent_config=added)])
    assert ogbench_reduced.stale(args, suite, "rebrac", [dict(agent_config="Gone(x=1)")])
    assert not ogbench_reduced.stale(args, suite, "rebrac", [dict(final=1.0)])  # no record
