"""oauth/profiles.py: which profile a client is held to (the stricter of its own and the
deployment's), and what fapi2 allows; the HTTP behaviour is in tests/e2e/test_fapi2_http.py."""

from __future__ import annotations

import pytest

from tokenward.core.records import ClientRecord
from tokenward.oauth.profiles import (
    BASELINE,
    FAPI2,
    Profile,
    Profiles,
    UnknownProfile,
    profile_named,
    redirect_uri_problem,
)


def _client(profile: str) -> ClientRecord:
    return ClientRecord(
        "c", "private_key_jwt", ("authorization_code",), frozenset(), 0.0, profile=profile
    )


@pytest.mark.parametrize(
    ("server", "client", "held_to"),
    [
        (BASELINE, "baseline", "baseline"),
        (BASELINE, "fapi2", "fapi2"),
        (FAPI2, "baseline", "fapi2"),
        (FAPI2, "fapi2", "fapi2"),
        (BASELINE, "fapi3", "fapi2"),  # a name this release does not know: the strictest
    ],
)
def test_the_stricter_profile_wins(server: Profile, client: str, held_to: str) -> None:
    profiles = Profiles(server)

    assert profiles.for_client(_client(client)).name == held_to


def test_unknown_profile_names_are_refused_where_they_are_set() -> None:
    with pytest.raises(UnknownProfile):
        profile_named("fapi3")


def test_fapi2_allows_what_fapi_2_0_allows() -> None:
    assert {
        alg for alg in ("PS256", "ES256", "EdDSA", "RS256", "ES384") if FAPI2.allows_alg(alg)
    } == {
        "PS256",
        "ES256",
        "EdDSA",
    }
    assert not FAPI2.allows_method("client_secret_basic")
    assert not FAPI2.allows_method("none")
    assert FAPI2.allows_method("self_signed_tls_client_auth")
    assert BASELINE.allows_alg("RS256")
    assert BASELINE.allows_method("client_secret_post")


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://bank.example/cb", True),
        ("http://127.0.0.1:8080/cb", True),
        ("http://[::1]/cb", True),
        ("com.example.bank:/cb", True),
        ("http://localhost:8080/cb", False),
        ("http://bank.example/cb", False),
    ],
)
def test_fapi2_redirect_uris(uri: str, allowed: bool) -> None:
    assert (redirect_uri_problem(FAPI2, uri) is None) is allowed
    assert redirect_uri_problem(BASELINE, uri) is None
