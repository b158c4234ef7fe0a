"""What an idempotency store keeps: one upstream answer, replayed to repeats of its request.

Value types only, shared by the gateway's flow (`tokenward.gateway.idempotency`) and the
backends, so a backend never imports the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    headers: Headers
    body: bytes
