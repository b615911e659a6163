"""experiments/run.py rejects impossible configurations before any work starts."""

import dataclasses
from pathlib import Path

import pytest

from experiments import run


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(agent="qamm"), "available: qam, qam_fql"),
        (dict(offline_steps=-1), "--offline-steps must be >= 0"),
        (dict(eval_interval=0), "--eval-interval must be >= 1"),  # TrainConfig's own check
        (dict(time_limit=float("nan")), "--time-limit must be > 0"),
        (dict(parallel_episodes=0), "--parallel-episodes must be >= 1"),
        (dict(chunk=0), "--chunk must be >= 1"),
        (dict(num_seeds=0), "--num-seeds must be >= 1"),
        (dict(tau=-1.0), "--tau must be finite and >= 0"),
        (dict(env="cube-nine-play-singletask-v0"), "not a singletask OGBench dataset name"),
        (dict(resume=True, out_dir=Path("/nonexistent/run")), "no checkpoint"),
    ],
)
def test_bad_configurations_fail_fast(tmp_path, capsys, changes, message):
    config = dataclasses.replace(run.RunConfig(data_dir=tmp_path), **changes)
    assert run.main(config) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_presets_fill_unset_fields_and_agent_configs_follow():
    config = run.resolve(run.RunConfig(preset="paper", agent="fql", width=64))
    assert config.width == 64 and config.depth == 4 and config.offline_steps == 1_000_000
    agent = run.agent_config(config)
    assert agent.critic.horizon == 5 and agent.critic.num_critics == 10 and agent.actor.width == 64
    qam = run.agent_config(run.resolve(run.RunConfig(tau=3.0)))
    assert qam.tau == 3.0 and qam.critic.horizon == 5


def test_num_seeds_names_the_run_directory_after_its_seeds():
    config = run.resolve(run.RunConfig(agent="fql", seed=3, num_seeds=2))
    assert config.out_dir == Path("runs/fql-cube-single-play-singletask-task1-v0-seeds3-4")
    assert run.resolve(run.RunConfig(seed=3)).out_dir.name.endswith("-seed3")


def test_resume_needs_a_checkpoint_of_the_same_seeds(tmp_path, capsys):
    import jax.numpy as jnp

    from interpolant_rl.train import save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.eqx", jnp.zeros(1), {"seeds": [0], "step": 10})
    for seed, num_seeds, seeds in ((3, 1, "[3]"), (0, 2, "[0, 1]")):
        config = run.RunConfig(
            data_dir=tmp_path / "data",
            out_dir=tmp_path,
            resume=True,
            seed=seed,
            num_seeds=num_seeds,
        )
        assert run.main(config) == 2
        err = capsys.readouterr().err
        assert f"holds a checkpoint of seeds [0], not one of seeds {seeds}" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing generated


def test_plot_makes_a_png_with_seed_intervals(tmp_path):
    import json

    from experiments import plot

    runs = []
    for seed in range(3):
        run_dir = tmp_path / f"qam-seed{seed}"
        run_dir.mkdir()
        (run_dir / "summary.json").write_text(
            json.dumps({"config": {"agent": "qam", "env": "cube-single-play-singletask-task2-v0"}})
        )
        rows = [{"step": s, "success": s / 100 + 0.1 * seed} for s in (10, 20, 30)]
        (run_dir / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(str(run_dir))
    out = tmp_path / "curves.png"
    assert plot.main([*runs, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.main([*runs, "--metric", "nope", "--out", str(out)]) == 2


def test_plot_reads_an_unfinished_multi_seed_run(tmp_path):
    import json

    import jax.numpy as jnp

    from experiments import plot
    from interpolant_rl.train import save_checkpoint

    run_dir = tmp_path / "fql-seeds0-1"  # no summary.json yet: only the shared checkpoint
    config = {"agent": "fql", "env": "cube-single-play-singletask-task1-v0"}
    save_checkpoint(run_dir / "checkpoint.eqx", jnp.zeros(2), {"run": config, "step": 20})
    for seed in range(2):
        (run_dir / f"seed{seed}").mkdir(parents=True)
        rows = [{"step": s, "success": 0.1 * seed} for s in (10, 20)]
        (run_dir / f"seed{seed}" / "eval.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    assert [d.name for d in plot._seed_dirs(run_dir)] == ["seed0", "seed1"]
    assert plot._label(run_dir / "seed1") == "fql · cube-single-play-singletask-task1-v0"
    assert plot.main([str(run_dir), "--out", str(tmp_path / "c.png")]) == 0
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "c.png")]) == 2  # not a run


def test_agent_help_lists_every_registered_agent():
    from interpolant_rl import agents

    source = (ROOT / "experiments" / "run.py").read_text()
    help_line = next(line for line in source.splitlines() if "Agent name: one of" in line)
    listed = {name.strip(' ."') for name in help_line.split("one of", 1)[1].split(",")}
    assert listed == set(agents.available_agents())


def test_agent_help_prints_every_agent_with_its_summary(capsys):
    from interpolant_rl import agents

    for argv in (["--agent", "help"], ["--agent=help"]):
        with pytest.raises(SystemExit) as exit_info:
            run.parse(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        names = [line.split()[0] for line in out.splitlines()[2:] if line and line[0] != " "]
        assert names == list(agents.available_agents())
    assert "Diffusion-BC: Diffusion-QL's policy" in out  # a named configuration's own line


def test_every_agent_setting_reaches_the_agent_from_the_command_line():
    # no flag for the agent: its configuration for the dataset's domain, sized by the preset
    config, agent = run.parse(["--agent", "fql"])
    assert agent == run.agent_config(run.resolve(config))
    # a field set on the command line wins; the rest keep the domain's and the preset's values
    _, agent = run.parse(["--agent", "fql", "--fql.alpha", "30", "--fql.critic.rho", "0"])
    assert (agent.alpha, agent.critic.rho, agent.critic.horizon, agent.actor.width) == (
        30.0,
        0.0,
        5,
        256,
    )
    triple = "cube-triple-play-singletask-task1-v0"
    assert run.parse(["--agent", "fql", "--env", triple])[1].alpha == 30.0  # Table 4's cell
    assert run.parse(["--agent", "fql", "--env", triple, "--fql.alpha", "100"])[1].alpha == 100.0
    # the CGQL variants by name, with their own fields
    _, cgql = run.parse(["--agent", "cgql_linex", "--cgql-linex.tau", "3"])
    assert (cgql.variant, cgql.tau) == ("linex", 3.0)


def test_agent_help_lists_its_fields_with_the_domain_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.parse(["--agent", "fql", "--env", "cube-triple-play-singletask-task1-v0", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--fql.alpha" in out and "--fql.critic.rho" in out
    assert "(default: 30.0)" in out  # cube-triple's alpha, not the cube-double default 300
    assert "distillation weight" in out  # the field's comment


def test_a_rejected_agent_value_exits_with_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.parse(["--agent", "fql", "--fql.alpha", "-3"])
    assert exit_info.value.code == 2
    assert "alpha must be" in capsys.readouterr().err


def test_wandb_flags_reach_the_schedule(tmp_path):
    config = run.resolve(
        run.RunConfig(wandb=True, wandb_mode="offline", wandb_group="g", out_dir=tmp_path / "x")
    )
    wandb = run.train_config(config).wandb
    assert (wandb.name, wandb.group, wandb.mode, wandb.project) == (
        "x",
        "g",
        "offline",
        "interpolant_rl",
    )
    assert run.train_config(run.resolve(run.RunConfig(out_dir=tmp_path / "y"))).wandb is None
    assert {"wandb", "wandb_mode", "wandb_name"} <= set(run.RESUMABLE)
