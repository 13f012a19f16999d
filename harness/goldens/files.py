"""Reading a file of a golden directory: a regular file inside it, read once, within a size bound.

A golden directory is untrusted, and a path is only a name: between a check and an open, a file
can become a symbolic link to anything, and a FIFO in place of a file blocks a plain ``open``
forever. So every file of a store is read through ``read_inside``: each directory on the way is
opened without following symbolic links (relative to the one before it), the file itself with
``O_NOFOLLOW | O_NONBLOCK``, the open descriptor is ``fstat``-ed and refused unless it is a regular
file, and its bytes are read once, up to the bound. The caller works on that copy only.

The store's own root may be a symbolic link (a user's choice); below it, nothing is followed.
Where the platform cannot open relative to a directory (Windows), the path is resolved and must
stay inside the root, and the file is checked the same way once open.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class Unreadable(Exception):
    """A file that is not read; ``missing`` when there is nothing at that name."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_RELATIVE = os.open in os.supports_dir_fd and _NOFOLLOW != 0


def read_inside(root: Path, name: str, limit: int, expected: int | None = None) -> bytes:
    """The bytes of ``root / name`` (``name`` relative, with ``/``): a regular file at most ``limit``
    bytes (and ``expected`` bytes, where a manifest says so). Raises Unreadable."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        raise Unreadable(f"{name!r} is not a plain path inside the golden directory")
    fd = _open_relative(Path(root), parts, name) if _RELATIVE else _open_resolved(Path(root), name)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(f"{name} is not a regular file ({_kind(info.st_mode)}); goldens are regular files")
        if info.st_size > limit:
            raise Unreadable(f"{name} is {info.st_size} bytes; at most {limit} are read")
        if expected is not None and info.st_size != expected:
            raise Unreadable(f"{name} is {info.st_size} bytes, but its manifest entry says {expected}")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit or (expected is not None and len(data) != expected):
        raise Unreadable(f"{name} changed while it was read")
    return data


def _open_relative(root: Path, parts: list[str], name: str) -> int:
    try:
        directory = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise Unreadable(f"{name} is missing (no directory {root})", missing=True) from None
    except OSError as exc:
        raise Unreadable(f"{name}: {exc.strerror}") from None
    try:
        for part in parts[:-1]:
            inner = _open_at(part, _DIRECTORY, directory, name, folder=True)
            os.close(directory)
            directory = inner
        return _open_at(parts[-1], _FLAGS, directory, name, folder=False)
    finally:
        os.close(directory)


def _open_at(part: str, flags: int, directory: int, name: str, folder: bool) -> int:
    try:
        return os.open(part, flags, dir_fd=directory)
    except FileNotFoundError:
        raise Unreadable(f"{name} is missing", missing=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or (folder and exc.errno == errno.ENOTDIR and _is_link(part, directory)):
            raise Unreadable(f"{name}: {part} is a symbolic link; nothing in a golden directory is followed") from None
        if exc.errno == errno.ENOTDIR:
            raise Unreadable(f"{name}: {part} is not a directory") from None
        if exc.errno == errno.EISDIR:
            raise Unreadable(f"{name} is a directory") from None
        raise Unreadable(f"{name}: {exc.strerror}") from None


def _is_link(part: str, directory: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(part, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_resolved(root: Path, name: str) -> int:
    path = root / name
    try:
        if not path.resolve().is_relative_to(root.resolve()):
            raise Unreadable(f"{name} points outside the golden directory")
        if path.is_symlink():
            raise Unreadable(f"{name} is a symbolic link; nothing in a golden directory is followed")
        return os.open(path, _FLAGS)
    except FileNotFoundError:
        raise Unreadable(f"{name} is missing", missing=True) from None
    except IsADirectoryError:
        raise Unreadable(f"{name} is a directory") from None
    except (OSError, RuntimeError) as exc:
        raise Unreadable(f"{name}: {getattr(exc, 'strerror', None) or exc}") from None


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return "not a regular file"
