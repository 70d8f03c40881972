"""Atomic file writes: a reader, or a crash at any moment, sees the old file or the new one.

Every file mlcls writes for the user (checkpoints, configs, metrics, predictions, exports, plots)
goes through :func:`atomic_path` so that a failure never leaves a half-written file under the
final name and never costs the previous file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mlcls.errors import ConfigError, DataError, WriteError

logger = logging.getLogger("mlcls")

_TMP_NAME = re.compile(r"^\..+\.(\d+)-[0-9a-f]{6}\.tmp(\.[^.]*)?$")  # what atomic_path names its files


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    The temporary name keeps ``path``'s extension (matplotlib and Pillow choose the format from it)
    and is unique per call, so concurrent writers never share it. On success the data and the
    rename are made durable (fsync of the file and of the folder); on any exception the temporary
    file is removed and ``path`` is left as it was. Permissions follow the umask, like ``open()``.

    Args:
        path: the final file; its folder is created if needed.

    Yields:
        The temporary path to write to (created empty; writers may replace it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(3)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_durably(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        cause = _os_error_in(e)
        if cause is not None and not isinstance(e, WriteError):
            raise _write_error(path, cause) from None
        raise


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: itself, or one it was raised while handling (torch.save reports a
    full disk as a RuntimeError from its zip writer, raised during the OSError's handling)."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _write_error(path: Path, e: OSError) -> WriteError:
    kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written under that name"
    return WriteError(f"could not write {path}: {e.strerror or e} ({kept}; no partial file was left)")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`: ``path`` appears only if the block succeeds.

    Text modes default to UTF-8; other keyword arguments go to ``open`` (e.g. ``newline=""`` for csv).
    """
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def replace_durably(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace(src, dst)``, then fsync the folder so the rename itself survives a power cut."""
    os.replace(src, dst)
    try:
        dfd = os.open(Path(dst).parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's live process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (SIGKILL skips every cleanup).

    Only :func:`atomic_path`'s names whose writer process no longer exists are removed; a live
    process's file in progress is never touched. Returns what was removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP_NAME.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not process_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.warning(
            "removed %d temporary file(s) left in %s by killed writers: %s", len(removed), folder, ", ".join(p.name for p in removed[:3])
        )
    return removed


def read_text_lines(path: str | os.PathLike, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file; bytes that are not ``encoding`` are an error naming the file,
    line and column (a bare UnicodeDecodeError names neither)."""
    data = Path(path).read_bytes()
    try:
        return data.decode(encoding).splitlines()
    except UnicodeDecodeError as e:
        raise DataError(decode_error_message(path, data, e)) from None


def decode_error_message(path: str | os.PathLike, data: bytes, e: UnicodeDecodeError) -> str:
    line = data[: e.start].count(b"\n") + 1
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    return f"{path}:{line}: byte 0x{data[e.start]:02x} at column {column} is not valid {e.encoding}; save the file as UTF-8"


LOCK_NAME = ".mlcls.lock"

# The descriptors of the locks this process holds. A forked child (a DataLoader or evaluation
# worker) shares the parent's open file description, and an flock lives as long as any process
# holds it open: workers that outlive a SIGKILLed run by seconds (PyTorch's watchdog) would keep
# the work dir locked against an immediate --resume. Each child closes its copies right after the
# fork, so the lock belongs to the run's own process only. (Exec'd subprocesses never get them:
# Python opens files non-inheritable.)
_HELD_LOCK_FDS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_HELD_LOCK_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class WorkDirLock:
    """One run per work dir at a time: an exclusive ``flock`` on ``<work_dir>/.mlcls.lock``.

    The kernel releases the lock when its process ends, however it ends (an exception, SIGKILL,
    a crash), so a lock is never stale: a lock file left by a dead process is simply taken over.
    Children forked while it is held (DataLoader workers) close their copy at once, so none of
    them keeps the lock after the run dies.
    The file holds the owner's PID, host and start time, for the refusal message. Use as a
    context manager, or :meth:`acquire` / :meth:`release`.

    Raises:
        ConfigError: another live process holds the lock (naming it).
    """

    def __init__(self, work_dir: str | os.PathLike, what: str = "training run") -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "WorkDirLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            logger.warning("no file locking on this platform: nothing stops a second run from writing into %s", self.path.parent)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 512).decode("utf-8", "replace").strip() or "unknown process"
                os.close(fd)
                raise ConfigError(
                    f"{self.path.parent} is in use by another {self.what} ({owner}); wait for it to finish, stop it, "
                    "or choose another folder with --work-dir"
                ) from None
            # the file may have been removed (released) between our open and our lock: lock the one on disk
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        _HELD_LOCK_FDS.add(fd)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # while still locked: a waiting process re-checks the inode and retries
        except OSError:
            pass
        _HELD_LOCK_FDS.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "WorkDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def loads_json_strict(text: str, where: str):
    """``json.loads`` that refuses a key given twice in one object (the standard library keeps the last).

    Raises:
        ValueError: naming ``where`` and the key (the caller turns it into its own error kind).
    """

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"the key '{k}' is given twice in one object")
            out[k] = v
        return out

    return json.loads(text, object_pairs_hook=pairs)


#: files that tools write as their results or inputs of the next step: an ``--out`` of another tool
#: (a report page, a comparison, a label-issue list) never replaces one of them
TOOL_FILES = frozenset({
    "eval_scores.npz", "oof_scores.npz", "heldout_scores.npz", "test_metrics.json", "test_metrics.txt", "folds.csv",
    "folds_run.json", "folds_summary.json", "folds_summary.txt", "seeds_summary.json", "seeds_summary.txt", "config.yaml",
    "thresholds.json", "scalars.jsonl", "train.log", "latest.pth", "best.pth",
})  # fmt: skip


def check_outputs(outputs, inputs, replaces: str = "") -> None:
    """Refuse, before anything is written, an output that is one of the command's inputs (the same
    file by any name) or a file another step of the workflow wrote (:data:`TOOL_FILES`, checkpoints).

    Args:
        outputs: the files the command is about to write.
        inputs: the files it reads.
        replaces: the file name this tool itself writes and may replace (e.g. ``label_issues.csv``).
    """
    real_inputs = {os.path.realpath(p): p for p in inputs}
    for out in outputs:
        out = Path(out)
        if os.path.realpath(out) in real_inputs:
            raise ConfigError(f"--out {out}: that is this command's input ({real_inputs[os.path.realpath(out)]}); choose another file")
        if out.name != replaces and out.exists() and (out.name in TOOL_FILES or out.suffix == ".pth"):
            raise ConfigError(f"{out}: another step's result would be replaced by this command's output; choose another --out")
