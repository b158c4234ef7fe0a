"""Config reload on SIGHUP or when the file (or a Cedar policy file) changes, without
dropping a request.

The new file is loaded and validated whole before anything changes; a bad file is logged and
refused and the running config stays. A good one replaces the gateway's compiled config in one
assignment: requests in flight finish under the config they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from pathlib import Path

import structlog

from tokenward.gateway.app import Gateway
from tokenward.gateway.config import ConfigError, load_config

log = structlog.get_logger(__name__)


class Reloader:
    def __init__(self, gateway: Gateway, path: str | Path) -> None:
        self.gateway = gateway
        self.path = Path(path)
        self._digest = self._read_digest()
        self.last_error: str | None = None
        self.reloads = 0

    def _read_digest(self) -> bytes | None:
        """The config file's hash, and its Cedar policy files': editing a policy reloads too."""
        digest = hashlib.sha256()
        try:
            digest.update(self.path.read_bytes())
        except OSError:
            return None
        for name in self.gateway.config.policy_files:
            try:
                digest.update(b"\0" + hashlib.sha256(Path(name).read_bytes()).digest())
            except OSError:
                digest.update(b"\0missing")  # a reload then says which file it could not read
        return digest.digest()

    def reload(self) -> bool:
        """Load, validate and apply the file now. False (old config kept) if it is refused."""
        self._digest = self._read_digest()
        try:
            config = load_config(self.path)
            self.gateway.reload(config)
        except (ConfigError, ValueError) as exc:
            self.last_error = str(exc)
            # No traceback: the message says what to fix, and the file is the operator's own.
            log.error("gateway_config_refused", path=str(self.path), error=str(exc))  # noqa: TRY400
            return False
        self.last_error = None
        self._digest = self._read_digest()  # the new config may watch other policy files
        self.reloads += 1
        log.info("gateway_config_reloaded", path=str(self.path), routes=len(config.routes))
        return True

    def check(self) -> bool | None:
        """Reload if the file's content changed since the last look; None when it did not."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return None  # unchanged, or mid-replace by an editor: look again next time
        return self.reload()

    async def watch(self, interval: float = 1.0) -> None:
        # Polling a hash, not inotify: no extra dependency, and an editor's rename-over-save
        # or a ConfigMap symlink swap is caught the same way.
        while True:
            await asyncio.sleep(interval)
            self.check()

    def install_sighup(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no SIGHUP on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
