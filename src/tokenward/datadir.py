"""The data directory holds the SQLite database and the master key: a new one is created
0700, and every file we put there is 0600 (the database, its -wal/-shm/-journal, master.key).

Modes are set explicitly, never left to the umask. Our files found more open (from an older
version, or made by hand) are tightened to 0600 with one warning line on standard error; if
that is impossible (another owner, a read-only mount), `DataDirError` says so in one line and
nothing starts. An existing directory more open than 0700 only gets a warning: it may be a
shared one (the default `var` is relative to the working directory, which may be `/`), and
with the files 0600 it shows names, not contents.
SQLite creates its -wal, -shm and -journal files with the mode of the database file, so a 0600
database keeps them 0600 too.

Log files we append to (the gateway's audit log, the server's security audit) go through
`open_private`: 0600 as well, wherever they are.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
log = logging.getLogger(__name__)  # stdlib: stderr by default, never the CLI's JSON on stdout
_warned: set[Path] = set()  # an open directory is said once per process, not per check


class DataDirError(Exception):
    """The data directory or a file in it cannot be made owner-only."""


def secure_dir(path: Path) -> None:
    """Create `path` (0700); warn about an existing one that others may enter."""
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{path} is not a directory")
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        current = path.stat()
    except OSError as exc:
        raise DataDirError(f"cannot create {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(current.st_mode)
    if mode & ~DIR_MODE and path not in _warned:
        _warned.add(path)
        log.warning(
            "tokenward: %s is mode %04o; `chmod 700 %s` makes it owner-only", path, mode, path
        )


def secure_file(path: Path, *, create: bool = False) -> None:
    """Tighten `path` to 0600 if it exists; with `create`, create it empty (0600) if absent."""
    try:
        if create:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        _tighten(path, FILE_MODE)
    except FileNotFoundError:
        # Absent, or removed between our look and our stat: SQLite deletes -wal/-shm when
        # another process (a sibling worker) closes its last connection. Gone needs no tightening.
        if create:  # the database itself is never removed by SQLite: its directory is absent
            raise DataDirError(f"cannot make {path} private (0600): no such directory") from None
    except OSError as exc:
        raise DataDirError(f"cannot make {path} private (0600): {exc.strerror}") from None


def open_private(path: Path) -> int:
    """A descriptor appending to `path`, created 0600 if absent. An existing regular file more
    open than that is tightened through the descriptor (no window for a swapped file); a
    device or FIFO (`/dev/stderr`, a log shipper's pipe) is left as it is. DataDirError
    (one line) when it cannot be opened or tightened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise DataDirError(f"cannot open {path}: {exc.strerror}") from None
    try:
        _tighten(path, FILE_MODE, fd)
    except OSError as exc:
        os.close(fd)
        raise DataDirError(f"cannot make {path} private (0600): {exc.strerror}") from None
    return fd


def secure_sqlite(url: str) -> None:
    """The database file of a SQLite URL owner-only, created if absent (in a new 0700
    directory if its directory is absent too)."""
    database = sqlite_file(url)
    if database is None:
        return
    secure_dir(database.parent)
    secure_file(database, create=True)
    for suffix in SQLITE_SIDE_FILES:
        secure_file(database.with_name(database.name + suffix))


def sqlite_file(url: str) -> Path | None:
    """The file behind a `sqlite+aiosqlite:///path` URL; None for in-memory or other URLs."""
    if not url.startswith("sqlite"):
        return None
    try:
        database = make_url(url).database
    except ArgumentError:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _tighten(path: Path, mode: int, fd: int | None = None) -> None:
    """`path` (or the open `fd` for it) down to `mode` if it is more open."""
    current = path.stat() if fd is None else os.fstat(fd)
    if not stat.S_ISREG(current.st_mode):
        if fd is not None:
            return  # a device or a pipe we were pointed at: its mode is not ours to change
        raise IsADirectoryError(21, "not a regular file", str(path))
    old = stat.S_IMODE(current.st_mode)
    if old & ~mode:
        if fd is None:
            os.chmod(path, old & mode)
        else:
            os.fchmod(fd, old & mode)
        log.warning("tokenward: %s was mode %04o; now %04o (owner only)", path, old, old & mode)
