"""Writing files so that a failure never leaves half of one behind, nor writes where it must not.

Output paths are checked before any work starts (`check_output_file`): an existing path must
be a regular file (never a directory, FIFO or device, never a symbolic link, dangling or not),
and the nearest existing ancestor a writable directory. Writes go to a temporary file beside
the target, renamed into place when complete.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import QonnxError


def usual_mode(directory: bool = False) -> int:
    """The permissions open()/mkdir() would give under the current umask (mkstemp gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _writable(directory: Path) -> bool:
    """Writable, and not marked read-only (root may write anywhere; we keep to the permission bits)."""
    return os.access(directory, os.W_OK | os.X_OK) and bool(stat.S_IMODE(directory.stat().st_mode) & 0o222)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def writable_ancestor(path: Path) -> Path:
    """The nearest existing ancestor of path; QonnxError unless it is a writable directory."""
    ancestor = path.parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if ancestor.is_symlink() and not ancestor.exists():
        raise QonnxError(f"{ancestor} is a dangling symbolic link: cannot write {path}")
    if not ancestor.is_dir():
        raise QonnxError(f"{ancestor} is not a directory: cannot write {path}")
    if not _writable(ancestor):
        raise QonnxError(f"{ancestor} is not writable: cannot write {path}")
    return ancestor


def check_output_file(path) -> Path:
    """The output path, checked (see the module docstring); nothing is created yet."""
    target = Path(path)
    if str(path) in ("", ".") or target.name in ("", ".", ".."):
        raise QonnxError(f"{str(path)!r} is not a file name")
    if target.is_symlink():
        raise QonnxError(f"{target} is a symbolic link: give the path of a regular file")
    if target.exists():
        mode = target.stat().st_mode
        if not stat.S_ISREG(mode):
            raise QonnxError(f"{target} is {_kind(mode)}: choose a regular file as output")
        if not _writable(target.parent):
            raise QonnxError(f"{target.parent} is not writable: cannot replace {target}")
        return target
    writable_ancestor(target)
    return target


def make_parents(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise QonnxError(f"cannot create {target.parent}: {error.strerror}") from None


def temporary_beside(target: Path, suffix: str = "") -> str:
    """A new empty temporary file in target's directory (created if needed), with the usual permissions."""
    make_parents(target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as error:
        raise QonnxError(f"cannot write in {target.parent}: {error.strerror}") from None
    os.fchmod(handle, usual_mode())
    os.close(handle)
    return temporary


def write_atomically(path, write) -> Path:
    """Call write(stream) on a temporary file beside `path`, then rename it into place."""
    target = check_output_file(path)
    temporary = temporary_beside(target)
    try:
        with open(temporary, "wb") as stream:
            write(stream)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def write_text_atomically(path, text: str) -> Path:
    return write_atomically(path, lambda stream: stream.write(text.encode()))
