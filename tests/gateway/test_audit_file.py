"""The gateway's audit log holds subjects, clients and addresses: its file is 0600 whatever the
umask, an older, more open one is tightened, and one that cannot be opened stops the start in
one line. A device or pipe it is pointed at is written to as it is."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.gateway.processes import gateway_process, refused
from tokenward.datadir import DataDirError
from tokenward.gateway.audit import AuditLog

OPEN_ROUTE = (
    "routes:\n  - {name: open, prefix: /open, upstreams: ['http://127.0.0.1:9'], auth: none}\n"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual 022 umask, under which the audit file was 0644 before."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}


def test_a_new_audit_file_is_owner_only(tmp_path: Path, open_umask: None) -> None:
    audit = AuditLog.open(str(tmp_path / "audit.jsonl"))
    assert audit is not None
    audit.close()
    assert mode(tmp_path / "audit.jsonl") == 0o600


def test_an_older_open_audit_file_is_tightened_and_kept(
    tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"old": "line"}\n')
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        audit = AuditLog.open(str(path))
    assert audit is not None
    audit.close()
    assert mode(path) == 0o600
    assert path.read_text() == '{"old": "line"}\n'  # appended to, never truncated
    assert "was mode 0644; now 0600" in caplog.text


def test_a_device_is_written_to_as_it_is() -> None:
    before = os.stat("/dev/null").st_mode
    audit = AuditLog.open("/dev/null")
    assert audit is not None
    audit.close()
    assert os.stat("/dev/null").st_mode == before


def test_an_audit_file_that_cannot_be_opened_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match=r"cannot open .*missing/audit\.jsonl: No such file"):
        AuditLog.open(str(tmp_path / "missing" / "audit.jsonl"))


def test_the_gateway_process_writes_its_audit_file_owner_only(
    tmp_path: Path, env: Mapping[str, str], open_umask: None
) -> None:
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "gateway.yaml"
    config.write_text(f"listen: {{port: 0}}\naudit: {{path: {audit}}}\n" + OPEN_ROUTE)
    with gateway_process(config, env) as gateway:
        assert httpx.get(gateway.base + "/nowhere").status_code == 404
    assert mode(audit) == 0o600


def test_an_unwritable_audit_path_stops_the_start_in_one_line(
    tmp_path: Path, env: Mapping[str, str]
) -> None:
    config = tmp_path / "gateway.yaml"
    missing = tmp_path / "missing" / "audit.jsonl"
    config.write_text(f"listen: {{port: 0}}\naudit: {{path: {missing}}}\n" + OPEN_ROUTE)
    status, stderr = refused(config, env)
    assert status == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"tokenward gateway: {config}: audit.path: cannot open {missing}")
    assert "point it at a file this user may write" in lines[0]
