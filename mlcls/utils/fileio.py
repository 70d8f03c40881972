"""Atomic file writes: a reader, or a crash at any moment, sees the old file or the new one.

Every file mlcls writes for the user (checkpoints, configs, metrics, predictions, exports, plots)
goes through :func:`atomic_path` so that a failure never leaves a half-written file under the
final name and never costs the previous file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(3)}.tmp{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
