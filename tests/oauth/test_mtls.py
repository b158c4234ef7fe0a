"""mTLS client authentication (RFC 8705 §2) and certificate binding at issuance (§3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FrozenClock
from tests.pki import Issued, Pki, self_signed
from tokenward.core.client_certs import ClientCertificate
from tokenward.core.records import ClientRecord
from tokenward.oauth.client_auth import ClientAuthenticator, SecretHasher
from tokenward.oauth.errors import InvalidClient, InvalidRequest
from tokenward.oauth.mtls import (
    SELF_SIGNED_TLS_CLIENT_AUTH,
    TLS_CLIENT_AUTH,
    certificate_binding,
    check_registration,
    confirmation,
    subject_matches,
)
from tokenward.store.memory import MemoryClientStore, MemoryReplayCache

ISSUER = "https://as.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def svc(pki: Pki) -> Issued:
    return pki.issue(
        "svc", "svc", dns=("svc.example",), uris=("spiffe://example/svc",),
        ips=("10.1.2.3",), emails=("svc@example.com",),
    )  # fmt: skip


@pytest.fixture
def store() -> MemoryClientStore:
    return MemoryClientStore()


@pytest.fixture
def authenticator(store: MemoryClientStore, clock: FrozenClock) -> ClientAuthenticator:
    return ClientAuthenticator(
        store, SecretHasher(b"k" * 32), MemoryReplayCache(clock), frozenset({ISSUER}), clock
    )


def client(method: str = TLS_CLIENT_AUTH, **fields: object) -> ClientRecord:
    return ClientRecord(
        client_id="svc",
        auth_method=method,
        grant_types=("client_credentials",),
        scopes=frozenset({"read"}),
        created_at=0.0,
        **{"tls_client_certificate_bound_access_tokens": True, **fields},  # type: ignore[arg-type]
    )


def cert(issued: Issued) -> ClientCertificate:
    return ClientCertificate(issued.der)


@pytest.mark.parametrize(
    ("field", "value", "matches"),
    [
        ("tls_client_auth_subject_dn", "O=Example,CN=svc", False),  # order matters in a DN
        ("tls_client_auth_subject_dn", "CN=svc,O=Example", True),
        ("tls_client_auth_subject_dn", "CN=svc, O=Example", True),  # spacing does not
        ("tls_client_auth_subject_dn", "CN=other,O=Example", False),
        ("tls_client_auth_san_dns", "SVC.example", True),  # DNS names are case-insensitive
        ("tls_client_auth_san_dns", "other.example", False),
        ("tls_client_auth_san_uri", "spiffe://example/svc", True),
        ("tls_client_auth_san_uri", "spiffe://example/SVC", False),
        ("tls_client_auth_san_ip", "10.1.2.3", True),
        ("tls_client_auth_san_ip", "10.1.2.4", False),
        ("tls_client_auth_san_email", "svc@example.com", True),
        ("tls_client_auth_san_email", "ops@example.com", False),
    ],
)
def test_subject_matching(svc: Issued, field: str, value: str, matches: bool) -> None:
    assert subject_matches(client(**{field: value}), cert(svc)) is matches


@pytest.mark.anyio
async def test_tls_client_auth_accepts_the_registered_subject(
    authenticator: ClientAuthenticator, store: MemoryClientStore, svc: Issued
) -> None:
    await store.put(client(tls_client_auth_san_dns="svc.example"))
    found = await authenticator.authenticate({"client_id": "svc"}, None, cert(svc))
    assert found.client_id == "svc"


@pytest.mark.anyio
async def test_tls_client_auth_refuses_another_certificate_or_none(
    authenticator: ClientAuthenticator, store: MemoryClientStore, pki: Pki
) -> None:
    await store.put(client(tls_client_auth_san_dns="svc.example"))
    other = pki.issue("other", "other", dns=("other.example",))
    with pytest.raises(InvalidClient):
        await authenticator.authenticate({"client_id": "svc"}, None, cert(other))
    with pytest.raises(InvalidClient, match="certificate"):
        await authenticator.authenticate({"client_id": "svc"}, None, None)


@pytest.mark.anyio
async def test_a_secret_client_is_not_authenticated_by_a_certificate(
    authenticator: ClientAuthenticator, store: MemoryClientStore, svc: Issued
) -> None:
    await store.put(client("client_secret_basic", secret_digest="x"))
    with pytest.raises(InvalidClient):
        await authenticator.authenticate({"client_id": "svc"}, None, cert(svc))


@pytest.mark.anyio
async def test_self_signed_matches_a_key_of_the_clients_jwks(
    authenticator: ClientAuthenticator, store: MemoryClientStore, tmp_path: Path
) -> None:
    mine, stranger = self_signed(tmp_path, "mine", "mine"), self_signed(tmp_path, "x", "x")
    await store.put(client(SELF_SIGNED_TLS_CLIENT_AUTH, jwks=json.dumps(mine.jwks())))
    assert (await authenticator.authenticate({"client_id": "svc"}, None, cert(mine))).client_id
    with pytest.raises(InvalidClient):
        await authenticator.authenticate({"client_id": "svc"}, None, cert(stranger))


def test_registration_rules() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        check_registration(TLS_CLIENT_AUTH, {}, has_keys=False)
    with pytest.raises(ValueError, match="exactly one"):
        check_registration(
            TLS_CLIENT_AUTH,
            {"tls_client_auth_san_dns": "a", "tls_client_auth_san_uri": "b"},
            has_keys=False,
        )
    with pytest.raises(ValueError, match="only for tls_client_auth"):
        check_registration("private_key_jwt", {"tls_client_auth_san_dns": "a"}, has_keys=True)
    with pytest.raises(ValueError, match="jwks"):
        check_registration(SELF_SIGNED_TLS_CLIENT_AUTH, {}, has_keys=False)
    with pytest.raises(ValueError, match="not an IP"):
        check_registration(TLS_CLIENT_AUTH, {"tls_client_auth_san_ip": "a.b"}, has_keys=False)
    check_registration(TLS_CLIENT_AUTH, {"tls_client_auth_san_ip": "::1"}, has_keys=False)


def test_one_binding_per_token_dpop_first() -> None:
    assert confirmation("jkt-value", "x5t-value") == {"jkt": "jkt-value"}
    assert confirmation(None, "x5t-value") == {"x5t#S256": "x5t-value"}
    assert confirmation(None, None) is None


def test_bound_client_without_a_certificate_is_refused(svc: Issued) -> None:
    bound = client(tls_client_auth_san_dns="svc.example")
    assert certificate_binding(bound, cert(svc)) == cert(svc).x5t_s256
    with pytest.raises(InvalidRequest):
        certificate_binding(bound, None)
    unbound = client(tls_client_certificate_bound_access_tokens=False)
    assert certificate_binding(unbound, cert(svc)) is None
