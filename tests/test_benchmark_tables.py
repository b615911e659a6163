"""The benchmark tables on the documentation site are what the committed JSON says."""

import json
from pathlib import Path

import pytest

from benchmarks import tables


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(tables.TABLES))
def test_committed_tables_are_rendered_from_the_committed_json(name):
    source = tables.RESULTS / f"{name}.json"
    assert source.exists(), f"{source} is included by docs/benchmarks.md"
    rendered = tables.TABLES[name](json.loads(source.read_text()))
    committed = (tables.RESULTS / f"{name}.md").read_text()
    assert committed == rendered + "\n", f"re-run python benchmarks/tables.py ({name}.md is stale)"


def test_malformed_json_is_one_line_error(tmp_path, capsys):
    (tmp_path / "train_step.json").write_text('{"results": []}')
    assert tables.main(["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_step.json" in err and "KeyError" in err
    assert not (tmp_path / "train_step.md").exists()
    (tmp_path / "train_step.json").unlink()
    assert tables.main(["--results", str(tmp_path)]) == 2
    assert "no benchmark JSON" in capsys.readouterr().err


def test_online_locomotion_report_from_fake_summaries(tmp_path):
    from benchmarks import online_locomotion

    results = tmp_path / "online_locomotion"
    for seed, scale in ((0, 1.0), (1, 2.0)):
        rows = [
            dict(
                step=step, episode_return=100.0 * scale * step, normalized_score=3.0 * scale * step
            )
            for step in (1, 2)
        ]
        config = dict(
            agent="rlpd", env="Hopper-v5", seed=seed, preset="cpu", offline_steps=0,
            online_steps=2, random_action_steps=1, eval_interval=1, eval_episodes=5,
        )  # fmt: skip
        summary = dict(
            config=config, agent_config="RLPDConfig()", final=rows[-1], evaluations=rows,
            wall_time_s=60.0, versions={"jax": "0"},
        )  # fmt: skip
        summary["online_locomotion"] = dict(  # what the benchmark adds: its sessions' time
            program_wall_time_s=120.0, sessions=2, command="experiments/run.py --agent rlpd"
        )
        path = results / "runs" / f"rlpd-2steps-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary))
    argv = ["--report", "--results", str(results), "--online-steps", "2", "--eval-interval", "1"]
    assert online_locomotion.main([*argv, "--seeds", "0", "1"]) == 0
    table = json.loads(results.with_suffix(".json").read_text())
    assert list(table["agents"]) == ["rlpd"]  # som and nc_lql have no runs: absent, not an error
    row = table["agents"]["rlpd"]
    assert row["final_normalized_score"]["values"] == [6.0, 12.0]
    assert row["final_normalized_score"]["mean"] == 9.0
    # 95 % t-interval over two seeds: t(0.975, 1) * std / sqrt(2) = 12.706 * 4.243 / 1.414
    assert row["final_normalized_score"]["ci95"] == pytest.approx(38.12, abs=0.01)
    assert row["episode_return"]["1"]["mean"] == 150.0
    assert row["steps_per_s"] == pytest.approx(2 / 120) and row["sessions"] == 2
    assert row["s_per_update"] == pytest.approx(120.0)  # 2 steps, 1 of them random
    md = results.with_suffix(".md").read_text()
    assert "| rlpd | 4.5 ± 19.1 | 9.0 ± 38.1 | 9.0 ± 38.1 |" in md
    assert "python experiments/run.py --agent rlpd" in md
    # another budget's runs are not this one's
    assert online_locomotion.main([*argv[:3], "--seeds", "0", "1"]) == 0
    assert json.loads(results.with_suffix(".json").read_text())["agents"] == {}
