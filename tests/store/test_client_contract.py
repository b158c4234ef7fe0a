"""ClientStore contract: every field round-trips, put replaces, list is sorted by client_id."""

from __future__ import annotations

import dataclasses

import pytest

from tests.store.conftest import Backend
from tokenward.core.records import ClientRecord

pytestmark = pytest.mark.anyio


def client(client_id: str, **changes: object) -> ClientRecord:
    record = ClientRecord(
        client_id=client_id,
        auth_method="client_secret_basic",
        grant_types=("client_credentials",),
        scopes=frozenset({"read"}),
        created_at=1_800_000_000.25,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


EVERY_FIELD = client(
    "web-app",
    auth_method="private_key_jwt",
    grant_types=("refresh_token", "authorization_code"),  # order is kept, not sorted
    scopes=frozenset({"openid", "profile", "email", "offline_access"}),
    created_at=1_800_000_000.987654,
    secret_digest="a3f1" * 16,
    redirect_uris=("https://app.example/cb", "http://127.0.0.1:8080/cb"),
    post_logout_redirect_uris=("https://app.example/bye",),
    audience=("https://api.example",),
    token_format="opaque",
    access_token_lifetime=300,
    refresh_token_lifetime=86400,
    skip_consent=True,
    dpop_required=True,
    disabled=True,
    jwks='{"keys":[{"kty":"EC","crv":"P-256","x":"…","y":"…"}]}',
    jwks_uri="https://app.example/jwks.json",
    id_token_alg="ES256",
    name="Die Küche — 台所",
    exchange_audiences=("https://c.example/api", "https://b.example/api"),
    exchange_impersonation=True,
    tls_client_auth_subject_dn="CN=web-app,O=Die Küche",
    tls_client_auth_san_dns="web.app.example",
    tls_client_auth_san_uri="spiffe://app.example/web",
    tls_client_auth_san_ip="2001:db8::7",
    tls_client_auth_san_email="ops@app.example",
    tls_client_certificate_bound_access_tokens=True,
    access_token_alg="ML-DSA-65",
    backchannel_logout_uri="https://app.example/backchannel-logout",
    backchannel_logout_session_required=True,
    require_pushed_authorization_requests=True,
    require_signed_request_object=True,
    profile="fapi2",
    owner="user-7f3a",  # the developer portal's registrant, and its approval (0017_portal)
    approval="pending",
)


async def test_unknown_client_is_none(backend: Backend) -> None:
    assert await backend.clients.get("nobody") is None


@pytest.mark.parametrize("record", [client("minimal"), EVERY_FIELD], ids=["defaults", "every"])
async def test_every_field_round_trips(backend: Backend, record: ClientRecord) -> None:
    await backend.clients.put(record)

    loaded = await backend.clients.get(record.client_id)

    assert loaded == record
    assert loaded is not None
    assert type(loaded.grant_types) is tuple
    assert type(loaded.scopes) is frozenset
    # 1 == True: equality alone would not catch a flag coming back as SQLite's integer.
    for field in dataclasses.fields(ClientRecord):
        value = getattr(record, field.name)
        assert type(getattr(loaded, field.name)) is type(value), field.name


async def test_put_replaces_the_whole_record(backend: Backend) -> None:
    await backend.clients.put(EVERY_FIELD)
    replacement = client("web-app", scopes=frozenset({"read", "write"}), name="renamed")

    await backend.clients.put(replacement)

    assert await backend.clients.get("web-app") == replacement
    assert list(await backend.clients.list_all()) == [replacement]


async def test_list_all_is_sorted_by_client_id_in_code_point_order(backend: Backend) -> None:
    ids = ["zeta", "Alpha", "alpha", "_svc", "beta-2", "beta"]
    for client_id in ids:
        await backend.clients.put(client(client_id))

    listed = [record.client_id for record in await backend.clients.list_all()]

    assert listed == sorted(ids)  # "Alpha" < "_svc" < "alpha": not a locale's order


async def test_list_all_of_an_empty_store_is_empty(backend: Backend) -> None:
    assert list(await backend.clients.list_all()) == []


async def test_delete_reports_whether_the_client_existed(backend: Backend) -> None:
    await backend.clients.put(client("a"))
    await backend.clients.put(client("b"))

    assert await backend.clients.delete("a") is True
    assert await backend.clients.delete("a") is False
    assert await backend.clients.delete("never") is False
    assert await backend.clients.get("a") is None
    assert list(await backend.clients.list_all()) == [client("b")]
