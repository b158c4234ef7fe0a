"""The data directory is owner-only: created 0700, every file in it 0600 (database, its -wal,
-shm and -journal, master.key), older files tightened, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenward.config import Settings
from tokenward.datadir import DataDirError, secure_file, sqlite_file
from tokenward.deploy.monitor_wiring import open_security_audit
from tokenward.deploy.wiring import open_stores
from tokenward.tokens.sealing import generate_master_key

TOKENWARD = str(Path(sys.executable).parent / "tokenward")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 022 umask, under which files were 0644 and directories 0755 before."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def tokenward(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    return subprocess.run(
        [TOKENWARD, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.umask(0o022),
    )


def test_init_on_a_fresh_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    result = tokenward(data_dir, "init")
    assert result.returncode == 0, result.stderr
    assert mode(data_dir) == 0o700
    assert {p.name: mode(p) for p in data_dir.iterdir()}.items() >= {
        ("master.key", 0o600),
        ("tokenward.db", 0o600),
    }
    assert all(mode(p) == 0o600 for p in data_dir.iterdir())
    assert result.stderr == ""  # nothing to warn about


def test_an_older_open_directory_is_tightened_with_a_warning(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert tokenward(data_dir, "init").returncode == 0
    os.chmod(data_dir, 0o755)  # noqa: S103 - what older versions left behind
    for name in ("tokenward.db", "tokenward.db-wal", "tokenward.db-shm", "master.key"):
        path = data_dir / name
        path.touch()
        os.chmod(path, 0o644)
    result = tokenward(data_dir, "keys", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[")  # the JSON output is untouched by the warnings
    assert all(mode(p) == 0o600 for p in data_dir.iterdir()), {
        p.name: oct(mode(p)) for p in data_dir.iterdir()
    }
    warnings = result.stderr.splitlines()
    assert f"tokenward: {data_dir / 'master.key'} was mode 0644; now 0600 (owner only)" in warnings
    assert any("tokenward.db-wal was mode 0644" in line for line in warnings)
    # An existing directory is not ours to chmod (the default `var` may be a shared one).
    assert f"tokenward: {data_dir} is mode 0755; `chmod 700 {data_dir}` makes it owner-only" in (
        warnings
    )
    assert mode(data_dir) == 0o755


def test_a_data_dir_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("")
    result = tokenward(data_dir, "init")
    assert result.returncode == 2  # a startup failure: one line, exit 2
    assert result.stderr.startswith(f"error: the data directory: {data_dir} is not a directory")
    assert len(result.stderr.splitlines()) == 1


def test_serve_keeps_the_database_files_owner_only(tmp_path: Path, open_umask: None) -> None:
    """In-process (a library user, no CLI umask): the modes are explicit, not the umask's."""
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, master_key=generate_master_key())

    async def write() -> None:
        stores = await open_stores(settings)
        try:
            await stores.replay.first_use("x", 1e12)  # a write: the -wal file exists now
            files = {p.name: mode(p) for p in data_dir.iterdir()}
            assert {"tokenward.db", "tokenward.db-wal"} <= set(files), files
            assert set(files.values()) == {0o600}, files
        finally:
            await stores.aclose()

    asyncio.run(write())
    assert mode(data_dir) == 0o700


def test_cannot_tighten_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match=r"cannot make .* private"):
        secure_file(tmp_path / "missing" / "file", create=True)


def test_a_side_file_removed_under_us_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sibling worker closing its last connection makes SQLite delete -wal and -shm at any
    moment, also between our stat and our chmod: that file needs no tightening, and serve starts."""
    wal = tmp_path / "tokenward.db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o644)
    real_chmod = os.chmod

    def removed_first(path: Path, mode: int) -> None:
        Path(path).unlink()  # what the other process does just then
        real_chmod(path, mode)

    monkeypatch.setattr(os, "chmod", removed_first)
    secure_file(wal)  # no DataDirError
    assert not wal.exists()
    secure_file(tmp_path / "absent-wal")  # and one that was never there is fine too


def test_sqlite_urls() -> None:
    assert sqlite_file("sqlite+aiosqlite:///var/tokenward.db") == Path("var/tokenward.db")
    assert sqlite_file("sqlite+aiosqlite:////srv/tw.db") == Path("/srv/tw.db")
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("postgresql+asyncpg://db/tw") is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_audit_file_is_created_owner_only(tmp_path: Path, open_umask: None) -> None:
    audit = open_security_audit(str(tmp_path / "audit.log"))
    assert audit is not None
    assert mode(tmp_path / "audit.log") == 0o600  # the file stays open for the process


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_older_open_audit_file_is_tightened(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "audit.log"
    path.write_text("an older line\n")
    path.chmod(0o644)
    assert open_security_audit(str(path)) is not None
    assert mode(path) == 0o600
    assert path.read_text() == "an older line\n"


def test_an_audit_file_that_cannot_be_opened_stops_serve_in_one_line(tmp_path: Path) -> None:
    assert tokenward(tmp_path, "init").returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    missing = tmp_path / "missing" / "audit.log"
    result = subprocess.run(
        [TOKENWARD, "--data-dir", str(tmp_path), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env={**env, "TOKENWARD_MONITOR_AUDIT_LOG": str(missing)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr  # a startup failure (docs/deployment.md)
    assert result.stderr == (
        f"error: TOKENWARD_MONITOR_AUDIT_LOG: cannot open {missing}: No such file or directory\n"
    )
