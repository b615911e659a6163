"""Metrics to JSON lines and CSV (one file pair per stream, e.g. `train` and `eval`), and
optionally to TensorBoard."""

import csv
import json
import math
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends rows `{"step": ..., metric: value}` to `{run_dir}/{stream}.jsonl` and
    `{run_dir}/{stream}.csv`. On resume, rows after the checkpoint's step are dropped first so
    the files read as if the run had never stopped.

    With `tensorboard=True` every numeric metric is also written as the scalar
    `{stream}/{metric}` at its row's step to event files in `{run_dir}/tensorboard` (needs the
    optional extra: `pip install "interpolant_rl[tensorboard]"`). Event files cannot be
    truncated, so a resumed run opens its writer with `purge_step` = the checkpoint's step, which
    tells TensorBoard to discard the older events after that step.
    """

    def __init__(
        self, run_dir: str | Path, resume_step: int | None = None, tensorboard: bool = False
    ):
        # a missing optional dependency fails before any existing file is touched
        summary_writer = _summary_writer_class() if tensorboard else None
        self.run_dir = Path(run_dir)
        self._writer = None  # opened below, after truncation: kept rows are already in TensorBoard
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        if resume_step is not None:
            for path in self.run_dir.glob("*.jsonl"):
                self._truncate(path.stem, resume_step)
        else:
            for path in [
                *self.run_dir.glob("*.jsonl"),
                *self.run_dir.glob("*.csv"),
                *self.run_dir.glob("tensorboard/events.out.tfevents.*"),
            ]:
                path.unlink()
        if summary_writer is not None:
            self._writer = summary_writer(
                str(self.run_dir / "tensorboard"),
                purge_step=resume_step,
                # event files are named by the second they are opened in: a unique, ordered
                # suffix keeps a quick resume from overwriting the run's earlier events
                filename_suffix=f".{time.time_ns()}",
            )

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
        if self._writer is not None:
            for name, value in row.items():
                if name != "step" and not isinstance(value, str):
                    self._writer.add_scalar(f"{stream}/{name}", value, global_step=row["step"])
            self._writer.flush()
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

    def close(self) -> None:
        """Close the TensorBoard writer, if any (the CSV/JSONL files are closed after each row)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def rows(self, stream: str) -> list[dict[str, Any]]:
        path = self.run_dir / f"{stream}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError(
            'TensorBoard logging needs tensorboardX: pip install "interpolant_rl[tensorboard]"'
        ) from None
    return SummaryWriter


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
