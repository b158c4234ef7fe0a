"""Form-encoded request bodies (RFC 6749 §3.1, Appendix B), parsed strictly.

Parameters MUST NOT repeat; parameters sent without a value are treated as omitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from tokenward.oauth.errors import InvalidRequest

MAX_FIELDS = 64
MAX_VALUE_LENGTH = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


MULTI_VALUED = frozenset({"resource"})  # RFC 8707 §2: resource may repeat


@dataclass(frozen=True, slots=True)
class Form:
    params: dict[str, str]
    resources: tuple[str, ...] = ()


def parse_form(body: bytes, content_type: str | None) -> Form:
    """The parameters of a form body; any malformation is `invalid_request`, never a crash."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise InvalidRequest(f"the request body must be {FORM_TYPE}")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request body is not a valid form") from None
    return form_from_pairs(pairs)


def form_from_pairs(pairs: list[tuple[str, str]]) -> Form:
    resources = tuple(value for name, value in pairs if name in MULTI_VALUED and value)
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in MULTI_VALUED:
            continue
        if name in params:
            raise InvalidRequest(f"the parameter {name[:40]!r} is repeated")
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidRequest(f"the parameter {name[:40]!r} is too long")
        if value:
            params[name] = value
        else:
            params.setdefault(name, "")
    # Parameters without a value count as omitted (RFC 6749 §3.1) once repeats were ruled out.
    return Form({name: value for name, value in params.items() if value}, resources)
