"""The authorization flow's assurance rule: the strongest of acr_values, the client's min_acr and
the user's floor, asked for when the user can reach it; a client minimum out of reach is
access_denied, acr_values out of reach are met as far as they can be."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import FrozenClock
from tokenward.core.assurance import MFA, PASSKEY, PHR, PWD, TOTP
from tokenward.core.records import ClientRecord, SessionRecord, UserRecord
from tokenward.oauth.authorize import AuthorizationRequest, RedirectError
from tokenward.oauth.flow import AuthorizationFlow, Redirect, ShowFactor
from tokenward.oauth.sessions import ActiveSession
from tokenward.store.memory_flows import MemoryCodeStore, MemoryConsentStore, MemoryGrantStore

pytestmark = pytest.mark.anyio
REQUEST = AuthorizationRequest(
    client_id="web",
    redirect_uri="https://app.example/cb",
    redirect_uri_given=True,
    scopes=("openid",),
    audience=("https://api.example",),
    code_challenge="x" * 43,
)
CLIENT = ClientRecord("web", "none", ("authorization_code",), frozenset({"openid"}), 0.0)
CLIENT = replace(CLIENT, skip_consent=True)


class Methods:
    def __init__(self, *methods: str) -> None:
        self.found = frozenset(methods)

    async def methods(self, user_id: str) -> frozenset[str]:
        return self.found


def _session(acr: str | None, clock: FrozenClock) -> ActiveSession:
    user = UserRecord("u1", "ann", "hash", 0.0, 0.0)
    record = SessionRecord("sid", "digest", "u1", clock(), clock() + 3600, acr=acr)
    return ActiveSession(record, user)


def _flow(clock: FrozenClock, *methods: str) -> AuthorizationFlow:
    codes = MemoryCodeStore(MemoryGrantStore())
    return AuthorizationFlow(
        codes, MemoryConsentStore(), "https://as.example", clock, factors=Methods(*methods)
    )


@pytest.mark.parametrize(
    ("methods", "session_acr", "acr_values", "min_acr", "asked"),
    [
        ((), PWD, None, None, None),  # no factor: the password is enough
        ((), None, None, None, None),  # a session from before levels: a password one
        ((TOTP,), PWD, None, None, MFA),  # the floor: who has an app uses it
        ((TOTP,), MFA, None, None, None),
        ((TOTP,), PWD, PHR, None, MFA),  # a passkey is out of reach: as far as possible
        ((TOTP, PASSKEY), MFA, PHR, None, PHR),  # step-up to the passkey
        ((PASSKEY,), PHR, MFA, None, None),  # a higher level satisfies a lower one
        ((), PWD, f"urn:other {MFA}", None, None),  # cannot reach mfa: pwd it is
        ((TOTP,), PWD, None, MFA, MFA),
        ((TOTP, PASSKEY), MFA, None, PHR, PHR),
    ],
)
async def test_what_is_asked_for(
    clock: FrozenClock,
    methods: tuple[str, ...],
    session_acr: str | None,
    acr_values: str | None,
    min_acr: str | None,
    asked: str | None,
) -> None:
    step = await _flow(clock, *methods).next_step(
        replace(REQUEST, acr_values=acr_values),
        replace(CLIENT, min_acr=min_acr),
        _session(session_acr, clock),
    )
    if asked is None:
        assert isinstance(step, Redirect)
    else:
        assert isinstance(step, ShowFactor)
        assert (step.level, step.methods) == (asked, frozenset(methods))


async def test_a_client_minimum_out_of_reach_is_access_denied(clock: FrozenClock) -> None:
    with pytest.raises(RedirectError) as refused:
        await _flow(clock, TOTP).next_step(
            REQUEST, replace(CLIENT, min_acr=PHR), _session(MFA, clock)
        )
    assert "error=access_denied" in refused.value.location


async def test_prompt_none_never_shows_the_factor_page(clock: FrozenClock) -> None:
    with pytest.raises(RedirectError) as refused:
        await _flow(clock, TOTP).next_step(
            replace(REQUEST, prompt=("none",)), CLIENT, _session(PWD, clock)
        )
    assert "error=login_required" in refused.value.location
