"""The command line, against a real SQLite data directory."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import jwt.algorithms
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from tokenward import __version__
from tokenward.config import load_settings
from tokenward.deploy.cli import app
from tokenward.deploy.startup import open_services
from tokenward.deploy.wiring import Services
from tokenward.oauth.client_auth import ASSERTION_TYPE, ClientAuthenticator
from tokenward.tokens.jwk import public_jwk

runner = CliRunner()


def run(data_dir: Path, *args: str, stdin: str | None = None) -> tuple[int, Any]:
    result = runner.invoke(app, ["--data-dir", str(data_dir), *args], input=stdin)
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    code, out = run(tmp_path, "init")
    assert code == 0, out
    return tmp_path


def test_init_creates_a_private_master_key_and_keys(data_dir: Path) -> None:
    key_file = data_dir / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, keys = run(data_dir, "keys", "list")
    assert code == 0
    assert isinstance(keys, list)
    assert {key["alg"] for key in keys} == {"ES256", "RS256"}
    assert {key["state"] for key in keys} == {"active", "next"}


def test_client_user_and_revocation_commands(data_dir: Path) -> None:
    code, client = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "app",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    )
    assert code == 0
    assert isinstance(client, dict)
    assert len(client["client_secret"]) >= 43
    code, clients = run(data_dir, "client", "list")
    assert [c["client_id"] for c in clients] == ["app"]
    assert "client_secret" not in clients[0]
    code, user = run(
        data_dir,
        "user",
        "create",
        "--username",
        "carol",
        "--password-stdin",
        stdin="long enough pw\n",
    )
    assert code == 0
    code, revoked = run(data_dir, "revoke", "--user", "carol")
    assert code == 0
    assert revoked["revoked"][0]["value"] == user["user_id"]
    code, changed = run(
        data_dir,
        "user",
        "set-password",
        "--username",
        "carol",
        "--password-stdin",
        stdin="another long pw\n",
    )
    assert code == 0
    assert "tokens_revoked_before" in changed
    code, promoted = run(data_dir, "user", "admin", "--username", "carol")
    assert code == 0, promoted


def test_duplicate_client_is_a_clear_error(data_dir: Path) -> None:
    args = ("client", "create", "--client-id", "app", "--grant-type", "client_credentials")
    assert run(data_dir, *args)[0] == 0
    code, out = run(data_dir, *args)
    assert code == 1
    assert "exists already" in str(out)


def test_the_readme_rotation_works_on_a_fresh_install(data_dir: Path) -> None:
    code, rotated = run(data_dir, "keys", "rotate")
    assert code == 0, rotated
    assert {k["state"] for k in rotated} == {"retiring", "active", "next"}


def test_a_second_rotation_needs_force_until_the_new_next_key_is_published(
    data_dir: Path,
) -> None:
    assert run(data_dir, "keys", "rotate")[0] == 0
    code, out = run(data_dir, "keys", "rotate")
    assert code == 1
    assert "--force" in str(out)
    code, rotated = run(data_dir, "keys", "rotate", "--force")
    assert code == 0
    assert {k["state"] for k in rotated} == {"retiring", "active", "next"}
    _, keys = run(data_dir, "keys", "list")
    # The keys that signed live tokens still verify (retiring), so --force breaks none of them.
    assert sorted(k["state"] for k in keys if k["alg"] == "ES256") == [
        "active",
        "next",
        "retiring",
        "retiring",
    ]


def test_wrong_master_key_fails_at_start_with_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWARD_MASTER_KEY", "A" * 43)
    code, out = run(data_dir, "keys", "list")
    assert code == 2  # tokenward cannot start as configured
    assert "wrong master key" in str(out)
    assert "Traceback" not in str(out)


def test_missing_master_key_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run(tmp_path, "keys", "list")
    assert code == 2
    assert "no master key" in str(out)


def test_keys_list_prints_iso_8601_utc_times(data_dir: Path) -> None:
    code, keys = run(data_dir, "keys", "list")
    assert code == 0
    for key in keys:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", key["created_at"]), key


def test_user_list_shows_users_without_password_hashes(data_dir: Path) -> None:
    run(data_dir, "user", "create", "--username", "erin", "--password-stdin", stdin="erin's pw 1\n")
    run(data_dir, "user", "admin", "--username", "erin")
    code, users = run(data_dir, "user", "list")
    assert code == 0, users
    [erin] = users
    assert erin["username"] == "erin"
    assert erin["admin"] is True
    assert set(erin) == {
        "user_id",
        "username",
        "disabled",
        "admin",
        "created_at",
        "password_changed_at",
    }
    assert "argon2" not in json.dumps(users)


def _client_key(kid: str = "k1") -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, public_jwk(key.public_key(), kid, "ES256")


def test_a_private_key_jwt_client_registered_from_a_jwks_file_authenticates(
    data_dir: Path,
) -> None:
    key, jwk = _client_key()
    path = data_dir / "client-jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    code, created = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "robot",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
        "--jwks",
        str(path),
    )
    assert code == 0, created
    assert created["auth_method"] == "private_key_jwt"
    assert created["jwks_kids"] == ["k1"]
    assert "client_secret" not in created
    assertion = jwt.encode(
        {
            "iss": "robot",
            "sub": "robot",
            "aud": "http://127.0.0.1:8000/token",
            "jti": "once",
            "exp": int(time.time()) + 60,
        },
        key,
        algorithm="ES256",
        headers={"kid": "k1"},
    )

    async def authenticate(services: Services) -> str:
        authenticator = ClientAuthenticator(
            services.stores.clients,
            services.hasher,
            services.stores.replay,
            frozenset({"http://127.0.0.1:8000/token"}),
        )
        params = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        return (await authenticator.authenticate(params, None)).client_id

    settings = load_settings(data_dir=data_dir)

    async def main() -> str:
        services = await open_services(settings)
        try:
            return await authenticate(services)
        finally:
            await services.stores.aclose()

    assert asyncio.run(main()) == "robot"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("private", "private or secret key members"),
        (
            '{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256"}]}',
            "private or secret key members",
        ),
        ('{"keys": [], "keys": []}', "JSON object"),
        ('{"keys": []}', "no signature key"),
        ("dup", "duplicate kid"),
    ],
)
def test_a_jwks_file_with_private_or_unsafe_keys_is_refused(
    data_dir: Path, document: str, problem: str
) -> None:
    key, jwk = _client_key()
    if document == "private":
        private = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(key)  # the full private JWK, with "d"
        )
        document = json.dumps({"keys": [private]})
    elif document == "dup":
        document = json.dumps({"keys": [jwk, _client_key()[1]]})
    path = data_dir / "client-jwks.json"
    path.write_text(document)
    code, out = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "robot",
        "--grant-type",
        "client_credentials",
        "--jwks",
        str(path),
    )
    assert code == 1
    assert problem in str(out)
    code, clients = run(data_dir, "client", "list")
    assert clients == []


def test_a_private_key_jwt_client_can_name_its_jwks_uri(data_dir: Path) -> None:
    base = ("client", "create", "--grant-type", "client_credentials")
    code, created = run(
        data_dir, *base, "--client-id", "robot", "--jwks-uri", "https://robot.example/jwks.json"
    )
    assert code == 0, created
    assert created["auth_method"] == "private_key_jwt"
    assert created["jwks_uri"] == "https://robot.example/jwks.json"
    code, out = run(data_dir, *base, "--client-id", "r2", "--jwks-uri", "http://robot.example/k")
    assert code == 1
    assert "https" in str(out)
    path = data_dir / "keys.json"
    path.write_text(json.dumps({"keys": [_client_key()[1]]}))
    code, out = run(
        data_dir,
        *base,
        "--client-id",
        "r3",
        "--jwks",
        str(path),
        "--jwks-uri",
        "https://x.example/k",
    )
    assert code == 1
    assert "--jwks-uri" in str(out)


def test_redirect_uris_are_checked_when_a_client_is_registered(data_dir: Path) -> None:
    base = ("client", "create", "--grant-type", "authorization_code", "--public")
    code, out = run(data_dir, *base, "--client-id", "spa", "--redirect-uri", "http://app.example/c")
    assert code == 1
    assert str(out).strip().count("\n") == 0  # one line
    assert "redirect URI 'http://app.example/c': http is allowed on loopback only" in str(out)
    code, out = run(
        data_dir,
        *base,
        "--client-id",
        "spa",
        "--redirect-uri",
        "https://app.example/cb",
        "--post-logout-redirect-uri",
        "https://app.example/bye#top",
    )
    assert code == 1
    assert "post-logout redirect URI 'https://app.example/bye#top': a fragment" in str(out)
    code, created = run(
        data_dir,
        *base,
        "--client-id",
        "spa",
        "--redirect-uri",
        "http://127.0.0.1/cb",
        "--redirect-uri",
        "com.example.app:/cb",
        "--post-logout-redirect-uri",
        "https://app.example/bye",
    )
    assert code == 0, created
    assert created["redirect_uris"] == ["http://127.0.0.1/cb", "com.example.app:/cb"]
    assert created["post_logout_redirect_uris"] == ["https://app.example/bye"]
    code, clients = run(data_dir, "client", "list")
    assert [client["client_id"] for client in clients] == ["spa"]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tokenward {__version__}"


def test_client_create_takes_a_token_exchange_policy(data_dir: Path) -> None:
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    code, client = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "orders",
        "--grant-type",
        exchange,
        "--scope",
        "read",
        "--exchange-audience",
        "https://inventory.example/api",
        "--exchange-audience",
        "https://billing.example/api",
        "--exchange-impersonation",
    )
    assert code == 0, client
    assert isinstance(client, dict)
    assert client["exchange_audiences"] == [
        "https://inventory.example/api",
        "https://billing.example/api",
    ]
    assert client["exchange_impersonation"] is True
    code, refused = run(
        data_dir, "client", "create", "--client-id", "spa", "--grant-type", exchange, "--public"
    )
    assert code != 0
    assert "confidential" in str(refused)


def test_client_create_takes_an_mtls_registration(data_dir: Path) -> None:
    base = ("client", "create", "--grant-type", "client_credentials", "--scope", "read")
    code, client = run(
        data_dir, *base, "--client-id", "svc", "--auth-method", "tls_client_auth",
        "--tls-subject-dn", "CN=svc, O=Example",
    )  # fmt: skip
    assert code == 0, client
    assert isinstance(client, dict)
    assert client["auth_method"] == "tls_client_auth"
    assert client["tls_client_auth_subject_dn"] == "CN=svc,O=Example"  # normalised once
    assert client["tls_client_certificate_bound_access_tokens"] is True
    assert "client_secret" not in client
    code, unbound = run(
        data_dir, *base, "--client-id", "ip", "--auth-method", "tls_client_auth",
        "--tls-san-ip", "10.0.0.7", "--no-tls-bound-tokens",
    )  # fmt: skip
    assert code == 0, unbound
    assert isinstance(unbound, dict)
    assert unbound["tls_client_certificate_bound_access_tokens"] is False
    for args, message in (
        (("--auth-method", "tls_client_auth"), "exactly one"),
        (
            ("--auth-method", "tls_client_auth", "--tls-san-dns", "a", "--tls-san-uri", "b"),
            "exactly one",
        ),
        (
            ("--auth-method", "tls_client_auth", "--tls-subject-dn", "not a dn"),
            "distinguished name",
        ),
        (("--auth-method", "tls_client_auth", "--tls-san-ip", "a.b.c"), "not an IP"),
        (
            (
                "--auth-method",
                "self_signed_tls_client_auth",
            ),
            "public keys",
        ),
        (("--tls-san-dns", "svc.example"), "only for tls_client_auth"),
    ):
        code, refused = run(data_dir, *base, "--client-id", "refused", *args)
        assert code != 0, args
        assert message in str(refused), (args, refused)


def test_client_create_takes_signing_algorithms(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = ("--access-token-alg", "ML-DSA-87", "--id-token-alg", "ML-DSA-65")
    base = ("client", "create", "--grant-type", "client_credentials", "--scope", "read")
    code, keyless = run(data_dir, *base, "--client-id", "early", *pinned)
    # Fail closed: the deployment holds no ML-DSA key yet, so nothing may be pinned to one.
    assert code == 1
    assert "no active ML-DSA-65 signing key; add ML-DSA-65 to TOKENWARD_SIGNING_ALGS" in str(
        keyless
    )
    monkeypatch.setenv("TOKENWARD_SIGNING_ALGS", "ML-DSA-87,ML-DSA-65")
    code, client = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "pqc",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
        "--access-token-alg",
        "ML-DSA-87",
        "--id-token-alg",
        "ML-DSA-65",
    )
    assert code == 0, client
    assert isinstance(client, dict)
    assert client["access_token_alg"] == "ML-DSA-87"
    assert client["id_token_signed_response_alg"] == "ML-DSA-65"
    code, refused = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "hmac",
        "--grant-type",
        "client_credentials",
        "--access-token-alg",
        "HS256",
    )
    assert code == 1
    assert "access_token_alg must be one of" in str(refused)


def test_keys_migrate_publishes_ahead_and_refuses_what_it_cannot(data_dir: Path) -> None:
    code, plan = run(
        data_dir, "keys", "migrate", "--to", "ML-DSA-65", "--audience", "https://a.example"
    )
    assert code == 0, plan
    assert isinstance(plan, dict)
    assert plan["alg"] == "ML-DSA-65"
    assert plan["previous"] == "ES256"
    assert plan["audience"] == "https://a.example"
    assert plan["switch_at"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # ahead
    code, keys = run(data_dir, "keys", "list")
    assert isinstance(keys, list)
    assert {(key["alg"], key["state"]) for key in keys} >= {
        ("ML-DSA-65", "active"),
        ("ML-DSA-65", "next"),
        ("ES256", "active"),  # the other audiences still sign with it
    }
    code, forced = run(data_dir, "keys", "migrate", "--to", "ML-DSA-44", "--force")
    assert code == 0, forced
    assert isinstance(forced, dict)
    assert forced["audience"] is None
    assert forced["switch_at"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    code, refused = run(data_dir, "keys", "migrate", "--to", "HS256")
    assert code == 1
    assert "migrate to one of" in str(refused)


def test_keys_migrate_to_ml_dsa_is_refused_under_fapi2(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWARD_PROFILE", "fapi2")
    code, refused = run(
        data_dir, "keys", "migrate", "--to", "ML-DSA-65", "--audience", "https://a.example"
    )
    assert code == 1
    assert "ML-DSA-65 is not in FAPI 2.0's PS256/ES256/EdDSA list" in str(refused)
    code, keys = run(data_dir, "keys", "list")
    assert isinstance(keys, list)
    assert "ML-DSA-65" not in {key["alg"] for key in keys}  # nothing generated or published
    code, plan = run(
        data_dir, "keys", "migrate", "--to", "PS256", "--audience", "https://a.example"
    )
    assert code == 0, plan


def test_a_client_held_to_par_and_signed_request_objects(data_dir: Path) -> None:
    """--require-par and --require-signed-request-object (RFC 9126, RFC 9101); a secret client
    may register keys for its request objects; keys are replaced with `client set-keys`."""
    path = data_dir / "jar-keys.json"
    path.write_text(json.dumps({"keys": [_client_key("jar-1")[1]]}))
    base = ("client", "create", "--grant-type", "authorization_code")
    uri = ("--redirect-uri", "https://app.example/cb")
    code, out = run(
        data_dir, *base, *uri, "--client-id", "nokeys", "--require-signed-request-object"
    )
    assert code == 1
    assert "signed request objects need the client's public keys" in str(out)
    code, created = run(
        data_dir,
        *base,
        *uri,
        "--client-id",
        "fapi",
        "--auth-method",
        "client_secret_basic",
        "--jwks",
        str(path),
        "--require-par",
        "--require-signed-request-object",
    )
    assert code == 0, created
    assert isinstance(created, dict)
    assert created["auth_method"] == "client_secret_basic"
    assert created["client_secret"]
    assert created["jwks_kids"] == ["jar-1"]
    assert created["require_pushed_authorization_requests"] is True
    assert created["require_signed_request_object"] is True

    code, moved = run(
        data_dir, "client", "set-keys", "fapi", "--jwks-uri", "https://app.example/jwks.json"
    )
    assert code == 0, moved
    assert isinstance(moved, dict)
    assert (moved["jwks_uri"], moved["jwks_kids"]) == ("https://app.example/jwks.json", [])
    code, out = run(data_dir, "client", "set-keys", "fapi")
    assert code == 1
    assert "jwks" in str(out)
    code, listed = run(data_dir, "client", "list")
    assert isinstance(listed, list)
    assert listed[0]["require_pushed_authorization_requests"] is True


def test_registration_tokens_are_created_listed_and_revoked(data_dir: Path) -> None:
    code, made = run(data_dir, "client", "registration-token", "create", "--max-uses", "2")
    assert code == 0, made
    assert isinstance(made, dict)
    assert len(made["token"]) >= 43
    assert made["max_uses"] == 2

    code, listed = run(data_dir, "client", "registration-token", "list")
    assert code == 0
    assert listed == [{k: v for k, v in made.items() if k != "token"}]  # never the token

    code, revoked = run(data_dir, "client", "registration-token", "revoke", made["token_id"])
    assert code == 0
    assert revoked == {"token_id": made["token_id"], "revoked": True}
    code, listed = run(data_dir, "client", "registration-token", "list")
    assert [token["revoked"] for token in listed] == [True]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ttl", "10"), "lifetime"),
        (("--ttl", "99999999"), "lifetime"),
        (("--max-uses", "0"), "max uses"),
    ],
)
def test_registration_tokens_are_bounded(
    data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    code, out = run(data_dir, "client", "registration-token", "create", *args)

    assert code == 1
    assert message in str(out)


def test_revoking_an_unknown_registration_token_is_a_clear_error(data_dir: Path) -> None:
    code, out = run(data_dir, "client", "registration-token", "revoke", "iat-nothing")

    assert code == 1
    assert "no initial access token" in str(out)


def test_client_create_profile_fapi2_refuses_metadata_the_profile_breaks(data_dir: Path) -> None:
    """`--profile fapi2` (docs/fapi2.md): registration refuses what FAPI 2.0 would refuse at
    every request: a secret, an http redirect URI other than a loopback IP literal, a key or ID
    token algorithm other than PS256/ES256/EdDSA, RSA below 2048 bits."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    es256 = data_dir / "es256.json"
    es256.write_text(json.dumps({"keys": [_client_key("fapi-1")[1]]}))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 refused
    rs256 = data_dir / "rs256.json"
    rs256.write_text(
        json.dumps(
            {"keys": [public_jwk(rsa.generate_private_key(65537, 2048).public_key(), "r", "RS256")]}
        )
    )
    weak = data_dir / "weak.json"
    weak.write_text(
        json.dumps({"keys": [{**public_jwk(small.public_key(), "w", "RS256"), "alg": "PS256"}]})
    )
    base = ("client", "create", "--grant-type", "authorization_code", "--profile", "fapi2")
    https = ("--redirect-uri", "https://bank.example/cb")
    refusals = {
        "secret": (*https, "--auth-method", "client_secret_basic", "--jwks", str(es256)),
        "localhost": ("--redirect-uri", "http://localhost:8080/cb", "--jwks", str(es256)),
        "http-host": ("--redirect-uri", "http://bank.example/cb", "--jwks", str(es256)),
        "rs256-key": (*https, "--jwks", str(rs256)),
        "rsa-1024": (*https, "--jwks", str(weak)),
        "rs256-id-token": (*https, "--jwks", str(es256), "--id-token-alg", "RS256"),
        "public": (*https, "--public"),
    }
    for name, args in refusals.items():
        code, out = run(data_dir, *base, "--client-id", name, *args)
        assert code == 1, (name, out)
    code, out = run(data_dir, *base, "--client-id", "secret", *refusals["secret"])
    assert "allows only these auth methods" in str(out)
    code, out = run(data_dir, *base, "--client-id", "x", *https, "--jwks", str(rs256))
    assert "RS256" in str(out)
    code, out = run(data_dir, *base[:-1], "fapi3", "--client-id", "x", *https)
    assert (code, "profile must be one of baseline, fapi2" in str(out)) == (1, True)

    code, created = run(
        data_dir,
        *base,
        "--client-id",
        "bank",
        *https,
        "--redirect-uri",
        "http://127.0.0.1/native-cb",
        "--jwks",
        str(es256),
    )
    assert code == 0, created
    assert isinstance(created, dict)
    assert created["profile"] == "fapi2"
    assert created["auth_method"] == "private_key_jwt"
    assert created["id_token_signed_response_alg"] == "ES256"  # RS256 is not allowed
    assert "client_secret" not in created


def test_a_client_minimum_sign_in_level(data_dir: Path) -> None:
    """`client create --min-acr` and `client update ID --min-acr` (docs/second-factors.md)."""
    base = ("client", "create", "--grant-type", "authorization_code")
    uri = ("--redirect-uri", "https://app.example/cb")
    code, created = run(
        data_dir, *base, *uri, "--client-id", "bank", "--min-acr", "urn:tokenward:acr:mfa"
    )
    assert code == 0, created
    assert isinstance(created, dict)
    assert created["min_acr"] == "urn:tokenward:acr:mfa"
    code, out = run(data_dir, *base, *uri, "--client-id", "gold", "--min-acr", "gold")
    assert code == 1
    assert "min_acr must be one of" in str(out)
    code, raised = run(data_dir, "client", "update", "bank", "--min-acr", "urn:tokenward:acr:phr")
    assert code == 0, raised
    assert isinstance(raised, dict)
    assert raised["min_acr"] == "urn:tokenward:acr:phr"
    code, cleared = run(data_dir, "client", "update", "bank", "--min-acr", "none")
    assert code == 0, cleared
    assert isinstance(cleared, dict)
    assert cleared["min_acr"] is None
    code, out = run(data_dir, "client", "update", "nobody", "--min-acr", "none")
    assert code == 1
    assert "no client" in str(out)
