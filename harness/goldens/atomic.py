"""Durable writes on any platform: a file replaced atomically, a directory tree staged from hard
links and swapped into place in one step where the OS allows it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable. Windows cannot open a directory; there
    os.replace is as durable as the platform offers, and this is nothing."""
    if os.name == "nt":
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fsync_tree(root: Path) -> None:
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(directory)


def link_tree(source: Path, stage: Path) -> None:
    """``stage`` as a copy of ``source`` made of hard links (nothing when source is absent)."""
    stage.mkdir(parents=True)
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_symlink() or relative.name.startswith("."):
            continue  # links are never carried over; temporaries of killed writes neither
        if path.is_dir():
            (stage / relative).mkdir(exist_ok=True)
        elif path.is_file():
            (stage / relative).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, stage / relative)


_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE). Where that is not
    available, two renames: a kill between them leaves the old directory under a's name."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # Windows: no C library by that name; the two renames below
        libc = None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: fall back below
            raise OSError(err, os.strerror(err), str(a))
    parked = a.with_name(a.name + ".old")
    os.rename(b, parked)
    os.rename(a, b)
    os.rename(parked, a)
