"""The exact-tilt script: its output files, and clear one-line errors on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import toy_tilt


ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "base": {"weights": [1.0], "means": [[0.0]], "covs": [[[0.1]]]},
    "critic": {"A": [[0.0]], "b": [1.0]},
    "tau": 1.0,
}


def test_writes_result_and_samples(tmp_path):
    out, samples_out = tmp_path / "r.json", tmp_path / "s.npy"
    code = toy_tilt.main(
        [
            "--agent",
            "rebrac",
            "--problem",
            "bimodal",
            "--seed",
            "1",
            "--steps",
            "20",
            "--out",
            str(out),
            "--samples-out",
            str(samples_out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    for field in (
        "sliced_wasserstein",
        "mmd",
        "mean_error",
        "base_sliced_wasserstein",
        "base_mmd",
        "base_mean_error",
        "exact_mean",
        "policy_mean",
        "wall_time_s",
    ):
        assert field in result, field
    assert np.allclose(result["exact_mean"], [0.41143, 0.0], atol=1e-4)
    samples = np.load(samples_out)
    assert samples.shape[0] >= 4096 and samples.shape[1] == 2
    assert np.allclose(samples.mean(0), result["policy_mean"], atol=1e-5)


@pytest.mark.parametrize(
    "problem, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "tau"}), "missing key 'tau'"),
        (json.dumps({**GOOD, "tau": -1.0}), "tau must be"),
        (json.dumps({**GOOD, "critic": {"A": [[0.0]], "b": [1.0, 2.0]}}), "A (d, d) and b (d,)"),
        (json.dumps({**GOOD, "critic": {"A": [[-20.0]], "b": [1.0]}}), "not normalisable"),
        (json.dumps({**GOOD, "base": {**GOOD["base"], "covs": [[[-0.1]]]}}), "positive definite"),
        (json.dumps({**GOOD, "base": {**GOOD["base"], "weights": [0.9]}}), "must sum to 1"),
        (json.dumps([GOOD]), "must hold a JSON object"),
        (json.dumps({**GOOD, "base": {**GOOD["base"], "means": [[0.0, 1.0]]}}), "base.covs"),
        (json.dumps({**GOOD, "base": {**GOOD["base"], "means": [0.0]}}), "base.means must be"),
        (json.dumps({**GOOD, "base": {**GOOD["base"], "means": [[0.0], [1.0, 2.0]]}}), "ragged"),
        (json.dumps({**GOOD, "critic": [1.0]}), "critic must be a JSON object"),
    ],
)
def test_malformed_problems_fail_with_one_line_and_write_nothing(
    tmp_path, capsys, problem, message
):
    path = tmp_path / "p.json"
    path.write_text(problem)
    out = tmp_path / "r.json"
    code = toy_tilt.main(["--agent", "qam", "--problem", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err and str(path) in err
    assert len(err.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_unknown_agent_and_problem(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert toy_tilt.main(["--agent", "nope", "--problem", "bimodal", "--out", str(out)]) != 0
    assert "available: qam" in capsys.readouterr().err
    assert toy_tilt.main(["--agent", "qam", "--problem", "nowhere", "--out", str(out)]) != 0
    assert "built-in problems: anisotropic_4d, bimodal, unimodal_linear" in capsys.readouterr().err
    assert not out.exists()


def test_the_built_in_problem_list_names_every_problem_file():
    from interpolant_rl.testing import exact_tilt

    files = {p.stem for p in exact_tilt.PROBLEMS_DIR.glob("*.json")}
    assert set(exact_tilt.BUILT_IN_PROBLEMS) == files
    assert len(exact_tilt.BUILT_IN_PROBLEMS) == len(files)
