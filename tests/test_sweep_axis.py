"""Hyperparameter axes in one program (`make_sweep`, `run.py --sweep`): every member of the
grid x seeds trains as the single run with its values and seed would (to float rounding, as a
seed next to other seeds does), in its own directory, and resumes exactly; values that are not
float hyperparameters are refused in one line."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from test_train_seeds import (
    agent_config,
    arrays,
    assert_rows_close,
    ATOL,
    CONFIG,
    DATA,
    DensePointMass,
    rows,
    RTOL,
)

from experiments import run
from interpolant_rl import agents, train


AXES = {"alpha": [3.0, 10.0], "learning_rate": [3e-4, 1e-3]}
SEEDS = [1, 2]
NAMES = [
    f"alpha={alpha:g},learning_rate={lr:g}/seed{seed}"
    for alpha in AXES["alpha"]
    for lr in AXES["learning_rate"]
    for seed in SEEDS
]


def member_config(alpha, learning_rate):
    return dataclasses.replace(agent_config(), alpha=alpha, learning_rate=learning_rate)


@pytest.fixture(scope="module")
def sweep():
    return train.make_sweep("fql", 1, 2, SEEDS, agent_config(), AXES)


@pytest.fixture(scope="module")
def full_sweep(sweep, tmp_path_factory):
    """The uninterrupted sweep, with a copy of its first checkpoint after step 20."""
    stacked, members = sweep
    run_dir = tmp_path_factory.mktemp("sweep")
    copies = []

    def keep_checkpoint(steps, info):
        path = run_dir / "checkpoint.eqx"
        if not copies and path.exists() and train.read_checkpoint_header(path)["step"] >= 20:
            copies.append(shutil.copy(path, run_dir.parent / "early.eqx"))

    envs = [DensePointMass() for _ in members]
    config = dataclasses.replace(CONFIG, seed=SEEDS[0])
    trained, evals = train.train_seeds(
        stacked, DATA, envs, config, run_dir, members=members, progress=keep_checkpoint
    )
    return run_dir, trained, evals, copies


def test_members_are_the_agents_made_with_their_values(sweep):
    stacked, members = sweep
    assert [member.name for member in members] == NAMES
    for index, member in enumerate(members):
        values = dict(member.values)
        single = agents.make_agent(
            "fql", 1, 2, jax.random.key(member.seed), member_config(**values)
        )
        alone = train.select_seed(stacked, index)
        assert alone.config == single.config  # Python floats again, the values as written
        assert alone.one_step.alpha == values["alpha"]
        for a, b in zip(arrays(alone), arrays(single), strict=True):
            np.testing.assert_array_equal(a, b)
    # a configuration outside a sweep has no leaves: checkpoints and compiled programs are
    # those of a static configuration
    assert jax.tree.leaves(agents.make_agent("fql", 1, 2, jax.random.key(0)).config) == []
    # in the sweep, alpha and both learning rates (configuration and Adam) are per member
    assert np.asarray(stacked.config.alpha).tolist() == [3.0] * 4 + [10.0] * 4
    assert stacked.behaviour.optimiser.learning_rate.shape == (8,)


def test_a_member_trains_as_the_single_run_with_its_values(sweep, full_sweep, tmp_path):
    run_dir, trained, evals, _ = full_sweep
    index = NAMES.index("alpha=10,learning_rate=0.001/seed2")
    single = agents.make_agent("fql", 1, 2, jax.random.key(2), member_config(10.0, 1e-3))
    alone, single_evals = train.train(
        single, DATA, DensePointMass(), dataclasses.replace(CONFIG, seed=2), tmp_path
    )
    member = train.select_seed(trained, index)
    for a, b in zip(arrays(member), arrays(alone), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    member_dir = run_dir / "alpha=10,learning_rate=0.001" / "seed2"
    assert_rows_close(rows(member_dir, "train"), rows(tmp_path, "train"))
    assert_rows_close(rows(member_dir, "eval"), rows(tmp_path, "eval"))
    assert [row["step"] for row in evals[index]] == [row["step"] for row in single_evals]
    # the values took effect: another alpha, or another learning rate, trains otherwise
    for other in ("alpha=3,learning_rate=0.001/seed2", "alpha=10,learning_rate=0.0003/seed2"):
        losses = [row["distillation_loss"] for row in rows(run_dir / other, "train")]
        assert losses != [row["distillation_loss"] for row in rows(member_dir, "train")]
    header = train.read_checkpoint_header(run_dir / "checkpoint.eqx")
    assert header["members"] == NAMES and header["seeds"] == [1, 2] * 4


def test_a_sweep_resumes_exactly(sweep, full_sweep, tmp_path):
    run_dir, trained, _, copies = full_sweep
    stacked, members = sweep
    (early,) = copies
    shutil.copy(early, tmp_path / "checkpoint.eqx")
    step = train.read_checkpoint_header(tmp_path / "checkpoint.eqx")["step"]
    for name in NAMES:  # the logs as they were at the checkpoint
        (tmp_path / name).mkdir(parents=True)
        for stream in ("train", "eval"):
            lines = (run_dir / name / f"{stream}.jsonl").read_text().splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= step]
            (tmp_path / name / f"{stream}.jsonl").write_text("".join(f"{x}\n" for x in kept))
    envs = [DensePointMass() for _ in members]
    config = dataclasses.replace(CONFIG, seed=SEEDS[0])
    resumed, _ = train.train_seeds(
        stacked, DATA, envs, config, tmp_path, members=members, resume=True
    )
    for a, b in zip(arrays(resumed), arrays(trained), strict=True):
        np.testing.assert_array_equal(a, b)
    # a checkpoint of these members is not read for other ones
    others = [dataclasses.replace(m, values=(("alpha", 1.0),)) for m in members]
    with pytest.raises(train.CheckpointError, match="a checkpoint of members"):
        train.train_seeds(stacked, DATA, envs, config, tmp_path, members=others, resume=True)


@pytest.mark.parametrize(
    "name, axes, message",
    [
        ("fql", {"alphaa": [1.0, 2.0]}, "cannot sweep 'alphaa': FQLConfig has no such field; its float fields: alpha"),
        ("fql", {"flow_steps": [2.0, 4.0]}, "cannot sweep 'flow_steps': FQLConfig.flow_steps is int, not a float"),
        ("fql", {"alpha": [-1.0, 2.0]}, "alpha must be finite and >= 0, got -1.0"),
        ("fql", {"critic.rhoo": [0.0]}, "CriticConfig has no such field"),
        ("qam_fql", {"alpha": [0.0, 10.0]}, "has another structure than with alpha=0"),
    ],
)  # fmt: skip
def test_what_cannot_be_swept_is_refused_in_one_line(name, axes, message):
    config = agents.resize(agents.default_config(name), width=8, depth=1, num_critics=2)
    with pytest.raises(ValueError, match=None) as error:
        train.make_sweep(name, 1, 2, [0], config, axes)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "spec, message",
    [("tau", "a sweep axis is NAME=V1,V2"), ("tau=", "NAME=V1,V2"), ("tau=1,x", "must be numbers"),
     ("tau=1,nan", "must be finite"), ("tau=1,1", "is repeated")],
)  # fmt: skip
def test_malformed_sweep_axes_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        train.parse_sweep(spec)


def test_run_py_sweeps_tau_as_one_program_and_resumes(tmp_path, capsys):
    base = [
        "--agent", "qam", "--dataset-episodes", "2", "--width", "16", "--depth", "1",
        "--batch-size", "16", "--offline-steps", "20", "--eval-interval", "10",
        "--eval-episodes", "1", "--updates-per-call", "10", "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    sweep_dir, single_dir = tmp_path / "sweep", tmp_path / "single"
    assert (
        run.cli([*base, "--sweep", "tau=1,3", "--num-seeds", "2", "--out-dir", str(sweep_dir)]) == 0
    )
    assert run.cli([*base, "--tau", "3", "--seed", "1", "--out-dir", str(single_dir)]) == 0
    member = sweep_dir / "tau=3" / "seed1"
    assert_rows_close(rows(member, "train"), rows(single_dir, "train"))
    assert_rows_close(rows(member, "eval"), rows(single_dir, "eval"))
    tau1 = rows(sweep_dir / "tau=1" / "seed1", "train")
    assert tau1[0]["terminal_adjoint_norm"] < rows(member, "train")[0]["terminal_adjoint_norm"]
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert set(summary["final"]) == {"tau=1", "tau=3"}
    assert summary["runs"] == ["tau=1/seed0", "tau=1/seed1", "tau=3/seed0", "tau=3/seed1"]
    assert json.loads((member / "summary.json").read_text())["sweep_values"] == {"tau": 3.0}
    out = capsys.readouterr().out
    assert "qam with tau=3 on" in out and "runs in" in out
    resume = [*base, "--sweep", "tau=1,3", "--num-seeds", "2", "--out-dir", str(sweep_dir)]
    assert run.cli([*resume, "--resume", "--offline-steps", "30"]) == 0
    assert [row["step"] for row in rows(member, "eval")] == [10, 20, 30]
    # the sweep is part of the recorded configuration, and field names are checked up front
    assert run.cli([*base, "--sweep", "tau=1,10", "--num-seeds", "2", "--resume",
                    "--offline-steps", "30", "--out-dir", str(sweep_dir)]) == 2  # fmt: skip
    assert "sweep=['tau=1,3'], not ['tau=1,10']" in capsys.readouterr().err
    assert run.cli([*base, "--sweep", "flow_steps=2,3", "--out-dir", str(tmp_path / "x")]) == 2
    assert "cannot sweep 'flow_steps'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_run_py_sweep_flags_accumulate_into_a_grid():
    config, _ = run.parse(
        ["--agent", "fql", "--sweep", "alpha=3,10", "--sweep", "learning_rate=1e-4,3e-4"]
    )
    assert config.sweep == ("alpha=3,10", "learning_rate=1e-4,3e-4")
    assert [m.name for m in run.members_of(config)][:2] == [
        "alpha=3,learning_rate=0.0001/seed0",
        "alpha=3,learning_rate=0.0003/seed0",
    ]
    assert len(run.members_of(config)) == 4
