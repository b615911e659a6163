"""benchmarks/qam_toy_options.py: each variant changes exactly the QAM settings it names, the
bar's verdict is the issue's rule (at most 1.5x the behaviour-cloning error at the fewest
updates; lower at the most, or else within the behaviour-cloning error there), and the command
writes its table (0 updates: nothing trains) or refuses a bad name in one line."""

import dataclasses
import json

import pytest

from benchmarks import qam_toy_options as options
from interpolant_rl.objectives import QAMReferenceAdjointMatching
from interpolant_rl.testing import exact_tilt


def test_each_variant_changes_only_what_it_names():
    paper = options.config("paper", "bimodal")
    assert paper == exact_tilt.toy_config("qam", exact_tilt.load_problem("bimodal")[2])
    both = options.config("lr_1e-3+adjoint_grid_30", "bimodal")
    assert both == dataclasses.replace(
        paper, learning_rate=1e-3, scheme=QAMReferenceAdjointMatching(30)
    )
    assert both.flow_steps == paper.flow_steps == 10  # acting stays on the paper's grid
    assert options.config("lr_1e-3", "bimodal").adjoint_scheme == paper.adjoint_scheme


def _row(steps, sw, bc, seed=0):
    return dict(
        variant="paper",
        problem="bimodal",
        seed=seed,
        steps=steps,
        sliced_wasserstein=sw,
        bc_sliced_wasserstein=bc,
    )


@pytest.mark.parametrize(
    "rows, verdict",
    [
        ([_row(3000, 0.075, 0.05), _row(12000, 0.07, 0.04)], "within, improving"),
        ([_row(3000, 0.076, 0.05), _row(12000, 0.07, 0.04)], "outside, improving"),
        ([_row(3000, 0.07, 0.05), _row(12000, 0.08, 0.04)], "within, not improving"),
        # no lower, but inside the flow's own fitting error at 12000
        ([_row(3000, 0.037, 0.05), _row(12000, 0.042, 0.045)], "within, at the BC error"),
        # means over seeds: (0.05 + 0.09) / 2 = 0.07 <= 1.5 x 0.05
        ([_row(3000, 0.05, 0.05), _row(3000, 0.09, 0.05, seed=1)], "within"),
        # closer than the two-seed mean, but not than the same seed: not improving
        (
            [_row(3000, 0.05, 0.05), _row(3000, 0.09, 0.05, seed=1), _row(12000, 0.06, 0.04)],
            "within, not improving",
        ),
    ],
)
def test_the_bar(rows, verdict):
    line = options.markdown(rows).splitlines()[-1]
    assert line.endswith(f"| {verdict} |"), line


def test_the_command_writes_its_table_and_refuses_bad_names(tmp_path, capsys):
    argv = ["--variants", "paper", "--problems", "unimodal_linear", "--steps", "0"]
    assert options.main([*argv, "--out-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "qam_toy_options.json").read_text())["rows"]
    assert [(r["variant"], r["problem"], r["steps"]) for r in rows] == [
        ("paper", "unimodal_linear", 0)
    ]
    assert "| paper | unimodal_linear | 0: " in (tmp_path / "qam_toy_options.md").read_text()
    capsys.readouterr()
    assert options.main(["--variants", "fast", "--out-dir", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("qam_toy_options.py: error: unknown variant 'fast'")
    assert "\n" not in error and not (tmp_path / "bad").exists()
    (tmp_path / "qam_toy_options.json").write_text("{not json")
    assert options.main([*argv, "--out-dir", str(tmp_path), "--merge"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("qam_toy_options.py: error: --merge:") and "\n" not in error
    assert (tmp_path / "qam_toy_options.json").read_text() == "{not json"  # left as it was
