"""A route's `websocket:` setting: whether it accepts WebSocket upgrades, and their limits."""

from __future__ import annotations

from dataclasses import dataclass

from tokenward.gateway.yamlnodes import Node

DEFAULT_MAX_MESSAGE = 1024 * 1024
MAX_MESSAGE_CEILING = 16 * 1024 * 1024  # uvicorn's own default: no route may go beyond it


@dataclass(frozen=True)
class WebSocketSettings:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE  # either way; a bigger message closes (1009)


def websocket_settings(node: Node | None) -> WebSocketSettings | None:
    """`websocket: true`, `false` (the default: upgrades refused), or a mapping of limits."""
    if node is None or node.is_null():
        return None
    if not node.is_mapping:
        return WebSocketSettings() if node.boolean() else None
    fields = node.mapping(frozenset({"max_message_bytes"}))
    size = DEFAULT_MAX_MESSAGE
    if "max_message_bytes" in fields:
        size = fields["max_message_bytes"].integer(minimum=1)
        if size > MAX_MESSAGE_CEILING:
            raise fields["max_message_bytes"].error(f"at most {MAX_MESSAGE_CEILING}")
    return WebSocketSettings(size)
