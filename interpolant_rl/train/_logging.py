"""Metrics to JSON lines and CSV (one file pair per stream, e.g. `train` and `eval`), and
optionally to TensorBoard and Weights & Biases: one logger, `MetricsLogger`, with its files and
any number of sinks behind it."""

import csv
import dataclasses
import json
import math
import secrets
import time
import warnings
from pathlib import Path
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    """Where a run's metrics go in Weights & Biases (the optional extra
    `pip install "interpolant_rl[wandb]"`). `mode="offline"` writes the W&B run under the run
    directory's `wandb/` without a network (upload later with `wandb sync`)."""

    project: str = "interpolant_rl"
    group: str | None = None  # runs of one experiment (run.py: the seeds of one run)
    name: str | None = None  # the run's display name (run.py: the run directory's name)
    mode: Literal["online", "offline"] = "online"

    def __post_init__(self):
        if self.mode not in ("online", "offline"):
            raise ValueError(f"wandb mode must be 'online' or 'offline', got {self.mode!r}")
        if not self.project:
            raise ValueError("wandb project must be a non-empty name")


class _TensorBoardSink:
    """Every numeric metric as the scalar `{stream}/{metric}` at its row's step."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.writer = _summary_writer_class()(
            str(run_dir / "tensorboard"),
            purge_step=resume_step,
            # event files are named by the second they are opened in: a unique, ordered
            # suffix keeps a quick resume from overwriting the run's earlier events
            filename_suffix=f".{time.time_ns()}",
        )

    def log(self, stream: str, row: dict[str, Any]) -> None:
        for name, value in row.items():
            if name != "step" and not isinstance(value, str):
                self.writer.add_scalar(f"{stream}/{name}", value, global_step=row["step"])
        self.writer.flush()

    def video(self, stream: str, step: int, name: str, path: Path) -> None:
        # tensorboardX encodes videos with moviepy, not a dependency: TensorBoard gets the MP4's
        # path as text at its step, the file stays in the run directory
        self.writer.add_text(f"{stream}/{name}", str(path), global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandbSink:
    """Every numeric metric as `{stream}/{metric}` against the custom x-axis `step` (so rows a
    resumed run logs again after its checkpoint's step are accepted, as points of the same
    curve). The W&B run id is kept in `{run_dir}/wandb_id.txt`: a resumed run continues the
    same W&B run."""

    def __init__(self, run_dir: Path, settings: WandbConfig, resume: bool, config: dict | None):
        wandb = _wandb_module()
        id_path = run_dir / "wandb_id.txt"
        if resume and id_path.exists():
            run_id = id_path.read_text().strip()
        else:
            run_id = secrets.token_hex(4)
            id_path.write_text(run_id + "\n")
        self.run = wandb.init(
            project=settings.project,
            group=settings.group,
            name=settings.name,
            mode=settings.mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            config=config,
            reinit="create_new",  # one W&B run per seed of a multi-seed program
        )
        self.run.define_metric("*", step_metric="step")

    def log(self, stream: str, row: dict[str, Any]) -> None:
        metrics = {f"{stream}/{k}": v for k, v in row.items() if k != "step"}
        self.run.log(
            {**{k: v for k, v in metrics.items() if not isinstance(v, str)}, "step": row["step"]}
        )

    def video(self, stream: str, step: int, name: str, path: Path) -> None:
        wandb = _wandb_module()
        self.run.log({f"{stream}/{name}": wandb.Video(str(path), format="mp4"), "step": step})

    def close(self) -> None:
        self.run.finish()


class MetricsLogger:
    """Appends rows `{"step": ..., metric: value}` to `{run_dir}/{stream}.jsonl` and
    `{run_dir}/{stream}.csv`. On resume, rows after the checkpoint's step are dropped first so
    the files read as if the run had never stopped.

    With `tensorboard=True` every numeric metric is also written as the scalar
    `{stream}/{metric}` at its row's step to event files in `{run_dir}/tensorboard` (needs the
    optional extra: `pip install "interpolant_rl[tensorboard]"`). Event files cannot be
    truncated, so a resumed run opens its writer with `purge_step` = the checkpoint's step, which
    tells TensorBoard to discard the older events after that step.

    With `wandb=WandbConfig(...)` every numeric metric also goes to a Weights & Biases run
    (`pip install "interpolant_rl[wandb]"`; `config`, e.g. the run's settings, is recorded as
    its config), its files under `{run_dir}/wandb`; a resumed run continues the same W&B run
    (its id in `{run_dir}/wandb_id.txt`), where the rows after the checkpoint's step are logged
    again as further points of the same curves (W&B cannot delete them).
    """

    def __init__(
        self,
        run_dir: str | Path,
        resume_step: int | None = None,
        tensorboard: bool = False,
        wandb: WandbConfig | None = None,
        config: dict[str, Any] | None = None,
    ):
        # a missing optional dependency fails before any existing file is touched
        if tensorboard:
            _summary_writer_class()
        if wandb is not None:
            _wandb_module()
        self.run_dir = Path(run_dir)
        self._sinks: list = []  # opened below, after truncation: kept rows are already there
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
        if tensorboard:
            self._sinks.append(_TensorBoardSink(self.run_dir, resume_step))
        if wandb is not None:
            self._sinks.append(_WandbSink(self.run_dir, wandb, resume_step is not None, config))

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
        for sink in self._sinks:
            sink.log(stream, row)
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

    def video(self, stream: str, step: int, name: str, path: str | Path) -> None:
        """Hand an MP4 already written (an evaluation video) to the sinks that take videos
        (W&B: `{stream}/{name}` at `step`)."""
        for sink in self._sinks:
            sink.video(stream, step, name, Path(path))

    def close(self) -> None:
        """Close the sinks (TensorBoard, W&B), if any; the CSV/JSONL files are closed after each
        row."""
        for sink in self._sinks:
            sink.close()
        self._sinks = []

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


def _wandb_module():
    try:
        import wandb
    except ImportError:
        raise ImportError(
            'Weights & Biases logging needs wandb: pip install "interpolant_rl[wandb]"'
        ) from None
    return wandb


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
