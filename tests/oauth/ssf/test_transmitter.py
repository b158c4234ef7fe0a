"""The transmitter inside one deployment (memory stores): which changes become which CAEP SETs,
for which streams, verified with jwcrypto against the deployment's own JWKS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from jwcrypto import jwk, jwt

from tokenward.config import Settings
from tokenward.core.records import Revocation, RevocationKind
from tokenward.core.signals import ASSURANCE_LEVEL_CHANGE, POLICY, SecuritySignal
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.oauth.ssf.streams import POLL, StreamError
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio
ISSUER = "https://as.example"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(issuer=ISSUER, master_key=generate_master_key(), data_dir=tmp_path)
    built = await build_services(settings, memory_stores())
    await built.shared_signals.start()
    try:
        yield built
    finally:
        await built.shared_signals.stop()


async def poll_stream(services: Services, *events: str, owner: str = "rx") -> tuple[str, str]:
    """A poll stream asking for `events` about a new user; (stream id, user id)."""
    user = await services.user_admin.create_user(f"user-{owner}", "a long password")
    streams = services.shared_signals.streams
    stream = await streams.create(
        owner, {"delivery": {"method": POLL}, "events_requested": [CAEP + e for e in events]}
    )
    subject = {"format": "iss_sub", "iss": ISSUER, "sub": user["user_id"]}
    await streams.add_subject(owner, {"stream_id": stream["stream_id"], "subject": subject})
    return stream["stream_id"], user["user_id"]


async def queued(services: Services, stream_id: str) -> list[dict[str, Any]]:
    """Every SET waiting for the stream, verified by jwcrypto with the published keys."""
    with anyio.fail_after(5):
        await services.shared_signals.transmitter.wait_idle()
    keys = jwk.JWKSet.from_json(json.dumps(services.keys.jwks()))
    pending, _more = await services.stores.set_queue.pending(stream_id, 100)
    found = []
    for _jti, token in pending:
        checked = jwt.JWT(jwt=token, key=keys, algs=["ES256"])
        assert checked.token.jose_header["typ"] == "secevent+jwt"
        found.append(json.loads(checked.claims))
    return found


async def test_a_password_change_is_a_credential_change(services: Services) -> None:
    stream_id, user_id = await poll_stream(services, "credential-change")

    await services.user_admin.set_password("user-rx", "another long password")

    [claims] = await queued(services, stream_id)
    event = claims["events"][CAEP + "credential-change"]
    assert claims["sub_id"] == {"format": "iss_sub", "iss": ISSUER, "sub": user_id}
    assert event["credential_type"] == "password"
    assert event["change_type"] == "update"
    assert event["initiating_entity"] == "admin"


async def test_a_role_change_is_a_token_claims_change(services: Services) -> None:
    stream_id, _user = await poll_stream(services, "token-claims-change")

    await services.user_admin.set_admin("user-rx", True)

    [claims] = await queued(services, stream_id)
    event = claims["events"][CAEP + "token-claims-change"]
    assert event["claims"] == {"roles": ["tokenward:admin"]}


async def test_an_assurance_level_change_carries_its_levels(services: Services) -> None:
    stream_id, user_id = await poll_stream(services, "assurance-level-change")
    details = (
        ("namespace", "RFC8176"),
        ("previous_level", "mfa"),
        ("current_level", "pwd"),
        ("change_direction", "decrease"),
    )

    services.shared_signals.transmitter.emit(
        SecuritySignal(ASSURANCE_LEVEL_CHANGE, 1.0, user_id, None, POLICY, "risk", details)
    )

    [claims] = await queued(services, stream_id)
    event = claims["events"][CAEP + "assurance-level-change"]
    assert {name: event[name] for name, _ in details} == dict(details)
    assert event["reason_admin"] == {"en": "risk"}


async def test_only_streams_asking_for_the_event_and_the_subject_get_it(
    services: Services,
) -> None:
    wants, user_id = await poll_stream(services, "session-revoked", owner="a")
    other_event, _ = await poll_stream(services, "credential-change", owner="b")
    other_user, _ = await poll_stream(services, "session-revoked", owner="c")

    await services.watermarks.revoke(subject=user_id)

    assert len(await queued(services, wants)) == 1
    assert await queued(services, other_event) == []
    assert await queued(services, other_user) == []


async def test_a_log_entry_seen_twice_is_signalled_once(services: Services) -> None:
    stream_id, user_id = await poll_stream(services, "session-revoked")
    now = services.clock()
    entry = Revocation(RevocationKind.SUBJECT, user_id, now, now + 3600)

    services.shared_signals.transmitter.revoked(41, entry)  # written here
    services.shared_signals.transmitter.revoked(41, entry)  # read back from the log

    assert len(await queued(services, stream_id)) == 1


async def test_user_wide_signals_are_damped_so_two_servers_cannot_loop(
    services: Services,
) -> None:
    """A receiver acting on our SET revokes, and its transmitter tells us, and we act...: the
    second user-wide revocation within a minute is not signalled again."""
    stream_id, user_id = await poll_stream(services, "session-revoked")

    await services.watermarks.revoke(subject=user_id)
    await services.watermarks.revoke(subject=user_id)  # the echo

    assert len(await queued(services, stream_id)) == 1


async def test_an_old_log_entry_is_history_not_news(services: Services) -> None:
    stream_id, user_id = await poll_stream(services, "session-revoked")
    long_ago = services.clock() - 3600

    services.shared_signals.transmitter.revoked(
        7, Revocation(RevocationKind.SUBJECT, user_id, long_ago, long_ago + 86400)
    )

    assert await queued(services, stream_id) == []


async def test_a_disabled_stream_drops_and_a_paused_one_holds(services: Services) -> None:
    stream_id, user_id = await poll_stream(services, "session-revoked")
    streams = services.shared_signals.streams
    await streams.set_status("rx", {"stream_id": stream_id, "status": "disabled"})
    await services.watermarks.revoke(subject=user_id)
    assert await queued(services, stream_id) == []

    await streams.set_status("rx", {"stream_id": stream_id, "status": "paused"})
    user = await services.stores.users.get(user_id)
    assert user is not None
    _secret, session = await services.sessions.start(user)
    await services.user_admin.end_session(session.session_id)
    assert len(await queued(services, stream_id)) == 1


async def test_streams_are_bounded_and_private(services: Services) -> None:
    streams = services.shared_signals.streams
    for _ in range(5):
        await streams.create("rx", {})
    with pytest.raises(StreamError) as too_many:
        await streams.create("rx", {})
    mine = await streams.read("rx", None)
    assert isinstance(mine, list)
    with pytest.raises(StreamError) as hidden:
        await streams.read("someone-else", mine[0]["stream_id"])

    assert too_many.value.status == 409
    assert hidden.value.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"delivery": {"method": "urn:example:carrier-pigeon"}},
        {"delivery": {"method": "urn:ietf:rfc:8935"}},  # push without a URL
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "ftp://rx.example/"}},
        # Not https, or not a public address (SSRF), without the development setting:
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "http://127.0.0.1:9/e"}},
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://localhost/e"}},
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://10.0.0.1/e"}},
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://[fe80::1]/e"}},
        {"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://169.254.169.254/"}},
        {"delivery": {"method": POLL, "endpoint_url": "https://rx.example/mine"}},
        {"events_requested": "session-revoked"},
        {"events_requested": [f"urn:e:{n}" for n in range(17)]},
        {"description": "x" * 257},
        {"stream_id": "chosen-by-me"},
        {"iss": "https://elsewhere.example"},
    ],
)
async def test_a_bad_configuration_is_a_400(services: Services, body: dict[str, Any]) -> None:
    with pytest.raises(StreamError) as refused:
        await services.shared_signals.streams.create("rx", body)

    assert refused.value.status == 400


async def test_subjects_and_verification_are_checked(services: Services) -> None:
    streams = services.shared_signals.streams
    stream_id = (await streams.create("rx", {}))["stream_id"]
    cases = [
        (streams.add_subject, {"stream_id": stream_id, "subject": "alice"}, 400),
        (streams.add_subject, {"stream_id": stream_id, "subject": {"format": "nick"}}, 400),
        (
            streams.remove_subject,
            {"stream_id": stream_id, "subject": {"format": "opaque", "id": "x"}},
            404,
        ),
    ]
    for call, body, status in cases:
        with pytest.raises(StreamError) as refused:
            await call("rx", body)
        assert refused.value.status == status

    await streams.verify("rx", {"stream_id": stream_id})
    with pytest.raises(StreamError) as too_soon:
        await streams.verify("rx", {"stream_id": stream_id})
    assert too_soon.value.status == 429
