"""How the gateway is served: uvicorn with coalesced writes (serving/coalescing.py: head and
body of a small answer in one syscall; on this path syscalls are most of the cost,
docs/gateway.md "What bounds the figures") and bounded request heads."""

from __future__ import annotations

import asyncio

from tokenward.serving.coalescing import coalescing
from tokenward.serving.limits import DEFAULT_MAX_CONNECTIONS, HeadLimits
from tokenward.serving.protocol import limited, parser_protocol


def http_protocol(limits: HeadLimits | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol when httptools is installed (about twice h11's rate on
    this path), else h11; either with coalesced writes and bounded request heads
    (tokenward.serving: `limits`, default HeadLimits())."""
    return limited(coalescing(parser_protocol()), limits or HeadLimits(), DEFAULT_MAX_CONNECTIONS)
