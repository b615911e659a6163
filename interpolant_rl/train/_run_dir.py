"""A run directory held by one process: locked, checked to be fresh, cleared or resumable, and
free of what a killed writer left behind."""

import contextlib
import shutil
from pathlib import Path
from typing import Literal

from .._files import FileLock, LockHeld, remove_stale_temporaries


LOCK_NAME = ".lock"
CHECKPOINT_NAME = "checkpoint.eqx"


class RunDirectory:
    r"""Exclusive use of a run directory, from `RunDirectory.open(path, mode)` to
    `release` (or the end of a `with` block; the operating system releases the lock if the process
    dies). Every check raises `ValueError` with one line naming the directory.

    - `mode="new"`: the directory must be missing or empty (a run never starts on top of another
      run's files, so `--resume` can never pick up a checkpoint that is not its own);
    - `mode="overwrite"`: whatever it holds is removed first, the checkpoint before anything else,
      so from the first removal on the directory cannot be resumed;
    - `mode="resume"`: it must hold `checkpoint.eqx`.

    The lock is the file `{path}/.lock` (holding the holder's pid; it stays after the run, and an
    otherwise empty directory that a failed start created is removed again on `release`).
    Temporaries of interrupted atomic writes (`.NAME.XXXXXXXX.tmp`) are removed on opening."""

    def __init__(self, path: Path, lock: FileLock, created: bool):
        self.path, self._lock, self._created = path, lock, created

    @classmethod
    def open(cls, path: str | Path, mode: Literal["new", "overwrite", "resume"]) -> "RunDirectory":
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file, not a run directory")
        created = not path.exists()
        lock = FileLock(path / LOCK_NAME)
        try:
            lock.acquire(wait=False)
        except LockHeld as held:
            holder = f"process {held.pid}" if held.pid is not None else "another process"
            raise ValueError(
                f"{path} is in use by another run ({holder}); wait for it to end or choose "
                "another --out-dir"
            ) from None
        except OSError as error:
            raise ValueError(
                f"{path}: cannot create the run directory ({error.strerror})"
            ) from None
        directory = cls(path, lock, created)
        try:
            directory._prepare(mode)
        except BaseException:
            directory.release()
            raise
        return directory

    def _prepare(self, mode: str) -> None:
        for directory in (self.path, *sorted(self.path.glob("seed*"))):
            remove_stale_temporaries(directory)
        entries = self.entries()
        checkpoint = self.path / CHECKPOINT_NAME
        if mode == "resume":
            if not checkpoint.exists():
                raise ValueError(f"--resume: no checkpoint in {self.path}")
        elif mode == "overwrite":
            checkpoint.unlink(missing_ok=True)
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)
        elif entries:
            names = ", ".join(sorted(entry.name for entry in entries)[:4])
            more = ", ..." if len(entries) > 4 else ""
            raise ValueError(
                f"{self.path} already holds a run ({names}{more}); continue it with --resume or "
                "replace it with --overwrite"
            )

    def entries(self) -> list[Path]:
        """Everything in the directory but its lock file."""
        return [entry for entry in self.path.iterdir() if entry.name != LOCK_NAME]

    def release(self) -> None:
        """Give the directory up; one this process created and left empty is removed."""
        self._lock.release()
        if self._created and self.path.is_dir() and not self.entries():
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # another process may have written there since
                self.path.rmdir()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
