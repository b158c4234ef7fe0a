"""Subject identifiers (RFC 9493) as a stream's receiver adds and removes them, and the key an
event's subject is matched on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

MAX_SUBJECT_BYTES = 1024
FORMATS = frozenset(
    {"iss_sub", "email", "opaque", "phone_number", "account", "did", "uri", "aliases", "complex"}
)


class SubjectError(ValueError):
    """The subject identifier is malformed; the message says how."""


def canonical(subject: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(subject), option=orjson.OPT_SORT_KEYS).decode()


def normalise(subject: object) -> str:
    """The subject as stored on a stream: canonical JSON; a complex subject with a `user`
    member stands for that user (events are about users and their sessions)."""
    if not isinstance(subject, dict):
        raise SubjectError("subject must be a JSON object (a subject identifier, RFC 9493)")
    fmt = subject.get("format")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise SubjectError(f"subject format must be one of {', '.join(sorted(FORMATS))}")
    if fmt == "complex" and isinstance(subject.get("user"), dict):
        return normalise(subject["user"])
    for name, value in subject.items():
        if not isinstance(value, str) and fmt not in {"complex", "aliases"}:
            raise SubjectError(f"subject member {name!r} must be a string")
    text = canonical(subject)
    if len(text) > MAX_SUBJECT_BYTES:
        raise SubjectError(f"subject identifiers are at most {MAX_SUBJECT_BYTES} bytes")
    return text


def user_key(issuer: str, user_id: str) -> str:
    """What a stream stores for one of our users added as `iss_sub`."""
    return canonical({"format": "iss_sub", "iss": issuer, "sub": user_id})
