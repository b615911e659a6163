"""Metrics to JSON lines and CSV (one file pair per stream, e.g. `train` and `eval`), and
optionally to TensorBoard."""

import csv
import json
import math
import time
import warnings
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
        rows = read_rows(self.run_dir / f"{stream}.jsonl", until=step)
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
        return read_rows(self.run_dir / f"{stream}.jsonl")


def read_rows(path: str | Path, until: int | None = None) -> list[dict[str, Any]]:
    """The rows of a metrics file `{stream}.jsonl` (`[]` if it is missing), with `until` only
    those of steps `<= until`.

    A last line without its newline that is not JSON is the trace of a write cut short (power
    loss, a full disk): it is dropped with a warning that says so; it always lies after the last
    checkpoint, whose step `until` is on resume. Any other line that is not a JSON row with an
    integer `step` raises `ValueError` naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: unreadable metrics file ({error})") from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the last line, without its newline: a cut-short write
                warnings.warn(
                    f"{path}: dropped a partial last line (a write cut short)", stacklevel=2
                )
                break
            raise ValueError(f"{path}: line {number} is not JSON (corrupt metrics file)") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}: line {number} is not a metrics row with a step")
        rows.append(row)
    return rows if until is None else [row for row in rows if row["step"] <= until]


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
