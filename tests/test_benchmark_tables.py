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
