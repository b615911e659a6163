"""Writing files atomically, removing what a killed writer left, and locking a file between
processes."""

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file next to `path`, flush it to disk, give it the usual
    permissions (0666 minus the umask; `mkstemp` makes 0600), and rename it onto `path`: readers
    see the old file or the new one, never a half-written one. On any error the temporary file
    is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# `atomic_write`'s temporaries: `.{name}.{8 random characters from mkstemp}.tmp`
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(
    directory: str | os.PathLike, names: Iterable[str] | None = None
) -> list[Path]:
    """Remove the temporaries `atomic_write` left in `directory` when a process was killed
    mid-write (only files of its own naming, `.{name}.XXXXXXXX.tmp`, and with `names` only those
    for these target names). Call it while holding the directory's lock, so no live write is
    removed. **Returns:** the removed paths."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    wanted = None if names is None else set(names)
    removed = []
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and path.is_file() and (wanted is None or match["name"] in wanted):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class LockHeld(RuntimeError):
    """Another process holds the lock (its pid, when it recorded one, is `pid`)."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{path} is locked by {holder}")


class FileLock:
    """An exclusive OS lock (`flock`) on the file `path`, held from `acquire` to `release`; the
    operating system releases it when the process exits or crashes, so a lock is never stale.
    The holder writes its pid into the file (for the message another process gets). The file
    itself stays: deleting a lock file while another process waits on it would let two hold it.

    `acquire(wait=False)` raises `LockHeld` at once when another process holds it;
    `wait=True` blocks until it is free (calling `on_wait(pid)` first)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def holder(self) -> int | None:
        """The pid recorded by the current (or last) holder."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def acquire(self, wait: bool = False, on_wait: Callable[[int | None], None] | None = None):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                file.close()
                raise LockHeld(self.path, self.holder()) from None
            if on_wait is not None:
                on_wait(self.holder())
            fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self):
        return self.acquire() if self._file is None else self

    def __exit__(self, *exc):
        self.release()
