"""Metrics to JSON lines and CSV (one file pair per stream, e.g. `train` and `eval`)."""

import csv
import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends rows `{"step": ..., metric: value}` to `{run_dir}/{stream}.jsonl` and
    `{run_dir}/{stream}.csv`. On resume, rows after the checkpoint's step are dropped first so
    the files read as if the run had never stopped."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        if resume_step is not None:
            for path in self.run_dir.glob("*.jsonl"):
                self._truncate(path.stem, resume_step)
        else:
            for path in [*self.run_dir.glob("*.jsonl"), *self.run_dir.glob("*.csv")]:
                path.unlink()

    def _truncate(self, stream: str, step: int) -> None:
        rows = [
            json.loads(line)
            for line in (self.run_dir / f"{stream}.jsonl").read_text().splitlines()
            if line
        ]
        rows = [row for row in rows if row["step"] <= step]
        (self.run_dir / f"{stream}.jsonl").unlink()
        csv_path = self.run_dir / f"{stream}.csv"
        if csv_path.exists():
            csv_path.unlink()
        for row in rows:
            self.log(stream, row)

    def log(self, stream: str, row: dict[str, Any]) -> None:
        row = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in row.items()}
        with open(self.run_dir / f"{stream}.jsonl", "a") as file:
            file.write(json.dumps(row) + "\n")
        csv_path = self.run_dir / f"{stream}.csv"
        if stream not in self._columns:
            if csv_path.exists():
                with open(csv_path) as file:
                    self._columns[stream] = next(csv.reader(file))
            else:
                self._columns[stream] = list(row)
                with open(csv_path, "w", newline="") as file:
                    csv.writer(file).writerow(self._columns[stream])
        with open(csv_path, "a", newline="") as file:
            csv.writer(file).writerow([_cell(row.get(c)) for c in self._columns[stream]])

    def rows(self, stream: str) -> list[dict[str, Any]]:
        path = self.run_dir / f"{stream}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
