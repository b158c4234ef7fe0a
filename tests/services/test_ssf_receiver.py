"""The Shared Signals receiver on its own (memory stores): which subject identifiers name which
user, what each CAEP event does to them, and the claims it refuses. SETs are made with jwcrypto.
(Over HTTP, with the transmitter's keys fetched from its jwks_uri: tests/e2e/test_ssf_live.py.)"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from jwcrypto import jwk, jwt

from tests.conftest import FrozenClock
from tokenward.config import Settings
from tokenward.core.records import RevocationKind
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.services.ssf_receiver import SetReceiver, SetRefused, Transmitter
from tokenward.tokens.jwk import VerificationKey, key_set_from_jwks
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
US = "https://as.example"
IDP = "https://idp.example"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
KEY = jwk.JWK.generate(kty="EC", crv="P-256", kid="k1", alg="ES256", use="sig")


class Keys:
    """The transmitter's keys, as RemoteJwks would hold them after a fetch."""

    def __init__(self) -> None:
        public = {"keys": [KEY.export_public(as_dict=True)]}
        self._keys = key_set_from_jwks(public)

    def get(self, kid: str | None) -> VerificationKey | None:
        return self._keys.get(kid) if kid else None

    async def refresh(self, *, unknown_kid: bool) -> bool:
        return False


@pytest.fixture
async def setup(tmp_path: Any) -> tuple[Services, SetReceiver, FrozenClock]:
    clock = FrozenClock()
    settings = Settings(issuer=US, master_key=generate_master_key(), data_dir=tmp_path)
    services = await build_services(settings, memory_stores(clock), clock)
    receiver = SetReceiver(
        [Transmitter(IDP, Keys(), "ES256")],
        frozenset({US}),
        services.stores.replay,
        services.stores.users,
        services.user_admin,
        services.watermarks,
        clock=clock,
    )
    await services.user_admin.create_user("alice@example.com", "a long password")
    return services, receiver, clock


def make_set(clock: FrozenClock, events: dict[str, Any], **claims: Any) -> str:
    payload = {
        "iss": IDP,
        "aud": US,
        "iat": int(clock()),
        "jti": secrets.token_urlsafe(8),
        "sub_id": {"format": "email", "email": "alice@example.com"},
        "events": events,
        **claims,
    }
    token = jwt.JWT(header={"alg": "ES256", "kid": "k1", "typ": "secevent+jwt"}, claims=payload)
    token.make_signed_token(KEY)
    serialized: str = token.serialize()
    return serialized


async def alice(services: Services) -> str:
    user = await services.stores.users.by_username("alice@example.com")
    assert user is not None
    return user.user_id


async def test_a_credential_change_about_an_email_logs_the_user_out(
    setup: tuple[Services, SetReceiver, FrozenClock],
) -> None:
    services, receiver, clock = setup
    user_id = await alice(services)
    user = await services.stores.users.get(user_id)
    assert user is not None
    secret, _session = await services.sessions.start(user)

    received = await receiver.receive(
        make_set(clock, {CAEP + "credential-change": {"credential_type": "password"}})
    )

    assert (received.user_id, received.action) == (user_id, "logout")
    assert await services.sessions.current(secret) is None
    entries = await services.stores.revocations.active(clock())
    assert [(e.kind, e.value) for _seq, e in entries] == [(RevocationKind.SUBJECT, user_id)]


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ({CAEP + "token-claims-change": {"claims": {"role": "guest"}}}, "revoke_tokens"),
        ({CAEP + "assurance-level-change": {"change_direction": "decrease"}}, "logout"),
        ({CAEP + "assurance-level-change": {"change_direction": "increase"}}, "none"),
        ({"https://example.com/event/unknown": {}}, "none"),
    ],
)
async def test_each_event_does_what_it_says(
    setup: tuple[Services, SetReceiver, FrozenClock], event: dict[str, Any], action: str
) -> None:
    services, receiver, clock = setup
    user_id = await alice(services)

    received = await receiver.receive(
        make_set(clock, event, sub_id={"format": "opaque", "id": user_id})
    )

    assert received.action == action


async def test_an_unknown_subject_is_accepted_and_ignored(
    setup: tuple[Services, SetReceiver, FrozenClock],
) -> None:
    _services, receiver, clock = setup
    token = make_set(
        clock,
        {CAEP + "session-revoked": {}},
        sub_id={"format": "iss_sub", "iss": IDP, "sub": "nobody"},
    )

    received = await receiver.receive(token)

    assert (received.user_id, received.action) == (None, "none")


@pytest.mark.parametrize(
    ("claims", "err"),
    [
        ({"iat": 1_800_000_000 + 120}, "invalid_request"),  # from the future
        ({"iat": "yesterday"}, "invalid_request"),
        ({"jti": ""}, "invalid_request"),
        ({"events": {}}, "invalid_request"),
        ({"aud": ["https://rp.example", "https://other.example"]}, "invalid_audience"),
    ],
)
async def test_claims_out_of_bounds_are_refused(
    setup: tuple[Services, SetReceiver, FrozenClock], claims: dict[str, Any], err: str
) -> None:
    _services, receiver, clock = setup
    events = claims.pop("events", {CAEP + "session-revoked": {}})

    with pytest.raises(SetRefused) as refused:
        await receiver.receive(make_set(clock, events, **claims))

    assert refused.value.err == err


async def test_a_jti_is_remembered_per_transmitter_until_the_set_is_too_old(
    setup: tuple[Services, SetReceiver, FrozenClock],
) -> None:
    _services, receiver, clock = setup
    token = make_set(clock, {CAEP + "session-revoked": {}}, jti="once")
    assert (await receiver.receive(token)).action == "logout"

    assert (await receiver.receive(token)).action == "duplicate"  # acknowledged, not acted on
    clock.advance(3000)  # long past the pending lease: held until the SET is too old
    assert (await receiver.receive(token)).action == "duplicate"
    clock.advance(600 + 60)
    with pytest.raises(SetRefused) as too_old:  # by then its iat refuses it anyway
        await receiver.receive(token)
    assert "iat" in too_old.value.description


class FailingOnce:
    """The session service, whose storage fails on the first call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    async def force_logout(self, user_id: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("the database is unreachable")
        result: dict[str, Any] = await self._inner.force_logout(user_id)
        return result


def receiver_with(services: Services, clock: FrozenClock, sessions: Any) -> SetReceiver:
    return SetReceiver(
        [Transmitter(IDP, Keys(), "ES256")],
        frozenset({US}),
        services.stores.replay,
        services.stores.users,
        sessions,
        services.watermarks,
        clock=clock,
    )


async def test_a_set_whose_action_failed_is_acted_on_when_retried(
    setup: tuple[Services, SetReceiver, FrozenClock],
) -> None:
    services, _receiver, clock = setup
    user_id = await alice(services)
    user = await services.stores.users.get(user_id)
    assert user is not None
    secret, _session = await services.sessions.start(user)
    sessions = FailingOnce(services.user_admin)
    receiver = receiver_with(services, clock, sessions)
    token = make_set(clock, {CAEP + "session-revoked": {}}, jti="retried")

    with pytest.raises(ConnectionError):
        await receiver.receive(token)
    assert await services.sessions.current(secret) is not None  # nothing was done

    clock.advance(2)  # the transmitter's retry, well within the pending lease
    assert (await receiver.receive(token)).action == "logout"
    assert await services.sessions.current(secret) is None
    assert (await receiver.receive(token)).action == "duplicate"
    assert sessions.calls == 2


class Slow:
    """The session service, slow enough that concurrent deliveries overlap."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    async def force_logout(self, user_id: str) -> dict[str, Any]:
        self.calls += 1
        for _ in range(20):
            await asyncio.sleep(0)  # yield to the other deliveries, without a wall-clock wait
        result: dict[str, Any] = await self._inner.force_logout(user_id)
        return result


async def test_concurrent_deliveries_of_one_set_act_once(
    setup: tuple[Services, SetReceiver, FrozenClock],
) -> None:
    services, _receiver, clock = setup
    sessions = Slow(services.user_admin)
    receiver = receiver_with(services, clock, sessions)
    token = make_set(clock, {CAEP + "session-revoked": {}}, jti="twice")

    results = await asyncio.gather(*(receiver.receive(token) for _ in range(5)))

    assert sorted(item.action for item in results) == ["duplicate"] * 4 + ["logout"]
    assert sessions.calls == 1
