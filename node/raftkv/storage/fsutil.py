"""Small durable-filesystem helpers shared by the stores."""

from __future__ import annotations

import os


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make creations, renames and deletions inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(path: str | os.PathLike[str]) -> None:
    """Create `path` (and parents) and make its creation durable."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_directory(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    fsync_directory(parent)


def write_all(fd: int, data: bytes) -> None:
    """One os.write; loops only if the kernel writes short (it does not for
    regular files unless something is wrong, e.g. the disk is full)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)
        while written < len(data):
            written += os.write(fd, view[written:])
