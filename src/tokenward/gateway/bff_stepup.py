"""Step-up in browser mode (RFC 9470 for a browser that holds no token).

A browser cannot answer `WWW-Authenticate: Bearer error="insufficient_user_authentication"`
itself, so on an `auth: bff` route the gateway turns the challenge (its own Cedar policies', or
the upstream's: an API behind the gateway is the resource server RFC 9470 speaks of) into what
a browser can follow:

- a top-level navigation (GET/HEAD, `Sec-Fetch-Mode: navigate`, or without that header an
  `Accept` naming text/html): 302 to the login path with `return_to` = this request and the
  challenge's `acr_values`/`max_age`;
- anything else (fetch/XHR): 401 JSON naming the same login URL, for the app to navigate to.

Loop protection: a sign-in started for a step-up leaves, at its callback, a short-lived cookie
naming what it asked for. The same demand again within `LOOP_WINDOW` means the issuer could
not reach the level: 403 `step_up_failed` instead of another round trip.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.types import Message, Scope, Send

from tokenward.gateway.policy import Denied
from tokenward.gateway.render import Answer, json_answer

MAX_ACR_VALUES = 8  # values in one acr_values list
MAX_ACR_LENGTH = 128  # characters in one value (URNs and URIs in practice)
MAX_MAX_AGE = 31_536_000  # one year in seconds: anything longer is no freshness demand
MAX_CHALLENGE_BYTES = 4096  # one WWW-Authenticate value looked at from an upstream
MAX_CHALLENGES = 8  # WWW-Authenticate fields looked at from an upstream
MAX_RETURN_TO = 2048  # a longer original request comes back to "/" after the sign-in
LOOP_WINDOW = 60  # seconds after a step-up sign-in during which the same demand is refused
STEP_UP_ERROR = "insufficient_user_authentication"
# RFC 6749 §3.3 scope-token characters (NQCHAR without space): what an acr value may hold.
_ACR_VALUE = re.compile(rf"[\x21\x23-\x5b\x5d-\x7e]{{1,{MAX_ACR_LENGTH}}}")
# RFC 9110 §11.2 auth-param: name = token / quoted-string.
_AUTH_PARAM = re.compile(r'([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


@dataclass(frozen=True)
class StepUp:
    """What a challenge asks for (each part optional)."""

    acr_values: str | None
    max_age: int | None

    def params(self) -> dict[str, str]:
        params = {}
        if self.acr_values:
            params["acr_values"] = self.acr_values
        if self.max_age is not None:
            params["max_age"] = str(self.max_age)
        return params

    def marker(self) -> str:
        """Names this demand in the loop-protection cookie (no secret: it only says what was
        asked for, and a browser that changes it only loses the protection for itself)."""
        text = f"{self.acr_values or ''}|{self.max_age if self.max_age is not None else ''}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def acr_values_of(text: str | None) -> str | None:
    """A space-separated acr list, checked; raises ValueError when malformed or too long."""
    if text is None or text == "":
        return None
    values = text.split(" ")
    if len(values) > MAX_ACR_VALUES or not all(_ACR_VALUE.fullmatch(v) for v in values):
        raise ValueError("acr_values must be at most 8 space-separated values")
    return text


def max_age_of(text: str | None) -> int | None:
    """A max_age in whole seconds (0 to a year); raises ValueError otherwise."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) > MAX_MAX_AGE:
        raise ValueError("max_age must be whole seconds, at most one year")
    return int(text)


def step_up_from_query(query: dict[str, str]) -> StepUp | None:
    """The step-up a login request asks for; `Denied` 400 when its parameters are malformed."""
    try:
        acr, age = acr_values_of(query.get("acr_values")), max_age_of(query.get("max_age"))
    except ValueError as exc:
        raise Denied(400, "malformed", str(exc), error="invalid_request") from None
    return StepUp(acr, age) if acr is not None or age is not None else None


def step_up_of_challenges(values: list[bytes]) -> StepUp | None:
    """The upstream's RFC 9470 challenge among its WWW-Authenticate fields, if any. Bounded:
    a few fields of a few KiB; values that are malformed or too large are dropped (the
    browser is then asked for a fresh sign-in without them)."""
    for raw in values[:MAX_CHALLENGES]:
        if len(raw) > MAX_CHALLENGE_BYTES:
            continue
        header = raw.decode("latin-1")
        params = {
            name.lower(): value[1:-1] if value.startswith('"') else value
            for name, value in _AUTH_PARAM.findall(header)
        }
        if params.get("error") != STEP_UP_ERROR:
            continue
        try:
            acr = acr_values_of(params.get("acr_values"))
        except ValueError:
            acr = None
        try:
            age = max_age_of(params.get("max_age"))
        except ValueError:
            age = None
        return StepUp(acr, age)
    return None


def is_navigation(scope: Scope) -> bool:
    """A top-level page load the browser can be redirected in (Fetch Metadata when sent)."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    mode: bytes | None = next((v for n, v in headers if n == b"sec-fetch-mode"), None)
    if mode is not None:
        return mode.strip().lower() == b"navigate"
    accept = b",".join(v for n, v in headers if n == b"accept")
    return b"text/html" in accept.lower()


def return_to_of(scope: Scope) -> str:
    """This request as a local path + query, to come back to after the sign-in."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    target = raw.decode("latin-1")
    query: str = scope.get("query_string", b"").decode("latin-1")
    if query:
        target = f"{target}?{query}"
    if len(target) > MAX_RETURN_TO or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def step_up_answer(
    scope: Scope,
    step_up: StepUp,
    login_path: str,
    marker: str | None,
    hsts: list[tuple[bytes, bytes]],
) -> tuple[Answer, str]:
    """The answer to a step-up challenge on a bff route, and its audit reason. `marker`: the
    loop-protection cookie's value, if the browser sent one."""
    if marker is not None and marker == step_up.marker():
        body = {
            "error": STEP_UP_ERROR,
            "error_description": "the new sign-in did not reach the authentication this "
            "request needs; the request was not retried",
            **step_up.params(),
        }
        return json_answer(403, body, hsts), "step_up_failed"
    login = f"{login_path}?{urlencode({'return_to': return_to_of(scope), **step_up.params()})}"
    if is_navigation(scope):
        headers = [
            (b"location", login.encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
            *hsts,
        ]
        return (302, headers, b""), STEP_UP_ERROR
    body = {
        "error": STEP_UP_ERROR,
        "error_description": "a stronger or more recent sign-in is required; navigate to login",
        **step_up.params(),
        "login": login,
    }
    return json_answer(401, body, hsts), STEP_UP_ERROR


class UpstreamChallenge:
    """Wraps a bff route's `send`: an upstream answer of 401 with the step-up challenge is held
    back (head and body), for the gateway to answer the browser instead."""

    def __init__(self, send: Send) -> None:
        self.inner = send
        self.step_up: StepUp | None = None

    async def __call__(self, message: Message) -> None:
        if self.step_up is not None:
            return  # the upstream's body for a challenge we replace
        if message["type"] == "http.response.start" and message["status"] == 401:
            values = [v for n, v in message.get("headers", ()) if n.lower() == b"www-authenticate"]
            self.step_up = step_up_of_challenges(values)
            if self.step_up is not None:
                return
        await self.inner(message)
