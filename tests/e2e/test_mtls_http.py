"""mTLS (RFC 8705) through `tokenward serve` terminating TLS itself, over loopback: httpx
presents client certificates generated at test time; joserfc (Authlib's) checks the tokens.

tls_client_auth (a SAN and a subject DN), self_signed_tls_client_auth (the certificate's key
in the client's JWKS), certificate-bound access tokens (cnf.x5t#S256 in the JWT and in
introspection), the binding enforced by the server's own protected API, and the refusals: no
certificate, another certificate, a certificate from an untrusted CA.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import requests_oauth2client as roc
from cryptography.hazmat.primitives import hashes
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.docs.blocks import documented, documented_command
from tests.e2e.mtls_setup import Served, serve
from tests.e2e.test_interop_openid_client import NODE_DIR, _node_ready
from tests.pki import Issued, Pki, self_signed
from tests.server.flows import Pkce, hidden_interaction, query_of
from tokenward.client import ClientCertificate, ClientCredentials, OAuthResponseError
from tokenward.client.dpop import DpopKey

CLIENT_CREDENTIALS = ("--grant-type", "client_credentials", "--scope", "read")


class Setup:
    def __init__(self, served: Served, tmp: Path, selfie: Issued) -> None:
        pki = served.pki
        assert pki is not None
        self.served = served
        self.svc = pki.issue("svc", "svc", dns=("svc.example",))
        self.dn = pki.issue("dn", "reporting")
        self.other = pki.issue("other", "other", dns=("other.example",))
        self.selfie = selfie
        self.stranger = Pki(tmp / "stranger", "stranger CA").issue("x", "x", dns=("svc.example",))
        served.cli("client", "create", "--client-id", "svc", *CLIENT_CREDENTIALS,
                   "--auth-method", "tls_client_auth", "--tls-san-dns", "svc.example")  # fmt: skip
        served.cli("client", "create", "--client-id", "reporting", *CLIENT_CREDENTIALS,
                   "--auth-method", "tls_client_auth",
                   "--tls-subject-dn", "CN=reporting, O=Example")  # fmt: skip
        jwks = tmp / "edge-app.jwks.json"
        jwks.write_text(json.dumps(selfie.jwks()))
        # docs/mtls.md's registration of a self-signed client, with this test's JWKS file.
        documented = documented_command(
            "docs/mtls.md", "tokenward client create --client-id edge-app"
        )
        served.cli(*[str(jwks) if arg == jwks.name else arg for arg in documented])
        self.secret = served.cli("client", "create", "--client-id", "mixed", *CLIENT_CREDENTIALS)[
            "client_secret"
        ]

    def token(self, client_id: str, cert: Issued | None, **extra: str) -> httpx.Response:
        with self.served.http(cert) as http:
            return http.post(
                "/token", data={"grant_type": "client_credentials", "client_id": client_id, **extra}
            )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("mtls")
    pki = Pki(tmp)
    # Python's TLS stack verifies every certificate it asks for: a self-signed client's
    # certificate is trusted by listing it beside the CA (or use a proxy, docs/mtls.md).
    selfie = self_signed(tmp, "selfie", "selfie")
    bundle = tmp / "trusted.pem"
    bundle.write_text(pki.ca.cert_path.read_text() + selfie.cert_path.read_text())
    with serve(tmp, pki=pki, ca_bundle=bundle) as served:
        yield Setup(served, tmp, selfie)


def thumbprint(cert: Issued) -> str:
    """Independently of tokenward: cryptography's SHA-256 fingerprint, base64url."""
    return base64.urlsafe_b64encode(cert.cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()


def verified_claims(served: Served, token: str) -> dict[str, object]:
    with served.http() as http:
        keys = KeySet.import_key_set(http.get("/jwks").json())
    claims: dict[str, object] = jwt.decode(token, keys, algorithms=["ES256"]).claims
    return claims


def test_metadata_announces_mtls(setup: Setup) -> None:
    with setup.served.http() as http:
        meta = http.get("/.well-known/oauth-authorization-server").json()
    base = setup.served.base
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    assert meta["mtls_endpoint_aliases"]["token_endpoint"] == f"{base}/token"
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )


@pytest.mark.parametrize("client_id", ["svc", "reporting", "edge-app"])
def test_certificate_authenticates_and_binds_the_token(setup: Setup, client_id: str) -> None:
    cert = {"svc": setup.svc, "reporting": setup.dn, "edge-app": setup.selfie}[client_id]
    response = setup.token(client_id, cert)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"  # RFC 8705 §3: still Bearer, bound by cnf
    claims = verified_claims(setup.served, body["access_token"])
    assert claims["client_id"] == client_id
    assert claims["cnf"] == {"x5t#S256": thumbprint(cert)}


def test_introspection_shows_the_binding(setup: Setup) -> None:
    access = setup.token("svc", setup.svc).json()["access_token"]
    with setup.served.http(setup.svc) as http:
        body = http.post("/introspect", data={"client_id": "svc", "token": access}).json()
    assert body["active"] is True
    assert body["cnf"] == {"x5t#S256": thumbprint(setup.svc)}
    assert body["token_type"] == "Bearer"


def test_bound_token_only_with_its_certificate(setup: Setup) -> None:
    access = setup.token("svc", setup.svc).json()["access_token"]
    auth = {"authorization": f"Bearer {access}"}
    with setup.served.http(setup.svc) as http:
        for _ in range(2):  # cold, then from the validator's cache: both compare
            assert http.get("/api/hello", headers=auth).status_code == 200
    for cert in (None, setup.other):
        with setup.served.http(cert) as http:
            refused = http.get("/api/hello", headers=auth)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_secret_client_gets_a_bound_token_when_it_presents_a_certificate(setup: Setup) -> None:
    """A client_secret_basic client registered for bound tokens (not the default) is bound to
    whichever certificate it uses; without one it is refused rather than given a bearer token."""
    served = setup.served
    record = served.cli("client", "create", "--client-id", "bound-secret", *CLIENT_CREDENTIALS,
                        "--tls-bound-tokens")  # fmt: skip
    with served.http(setup.other, auth=("bound-secret", record["client_secret"])) as http:
        access = http.post("/token", data={"grant_type": "client_credentials"}).json()
    claims = verified_claims(served, access["access_token"])
    assert claims["cnf"] == {"x5t#S256": thumbprint(setup.other)}
    with served.http(None, auth=("bound-secret", record["client_secret"])) as http:
        refused = http.post("/token", data={"grant_type": "client_credentials"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"


def test_unbound_client_with_a_certificate_gets_a_plain_token(setup: Setup) -> None:
    with setup.served.http(setup.other, auth=("mixed", setup.secret)) as http:
        access = http.post("/token", data={"grant_type": "client_credentials"}).json()
    assert "cnf" not in verified_claims(setup.served, access["access_token"])


@pytest.mark.parametrize("case", ["no certificate", "another certificate", "wrong DN"])
def test_refusals_are_invalid_client(setup: Setup, case: str) -> None:
    client_id, cert = {
        "no certificate": ("svc", None),
        "another certificate": ("svc", setup.other),
        "wrong DN": ("reporting", setup.svc),
    }[case]
    response = setup.token(client_id, cert)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_self_signed_certificate_of_another_key_is_refused(setup: Setup) -> None:
    response = setup.token("edge-app", setup.svc)  # a valid certificate, not the client's key
    assert response.status_code == 401


def test_certificate_from_an_untrusted_ca_fails_the_handshake(setup: Setup) -> None:
    # TLS 1.3: the client learns of the server's alert on its first read, not at connect.
    with pytest.raises(httpx.TransportError), setup.served.http(setup.stranger) as http:
        http.post("/token", data={"grant_type": "client_credentials", "client_id": "svc"})


def test_plain_tls_without_client_certificate_still_serves(setup: Setup) -> None:
    with setup.served.http() as http:
        # Certificates are asked for, not required: browsers and other clients need none.
        assert http.get("/.well-known/openid-configuration").status_code == 200


def test_sdk_presents_its_certificate(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/mtls.md's SDK block, with this test's files and server: ClientCredentials with
    `certificate=` authenticates by tls_client_auth, and an API client made from the same
    certificate uses the bound token."""
    served = setup.served
    assert served.pki is not None
    block = documented("docs/mtls.md", "python", "import httpx")
    text = block.text
    for written, actual in (
        ('"svc.pem"', repr(str(setup.svc.cert_path))),
        ('"svc.key"', repr(str(setup.svc.key_path))),
        ('"ca.pem"', repr(str(served.pki.ca.cert_path))),
        ("https://auth.example.com", served.base),
    ):
        text = text.replace(written, actual)
    namespace: dict[str, object] = {}
    exec(compile("\n" * block.line + text, "docs/mtls.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    assert "'client_id': 'svc'" in printed
    source = namespace["source"]
    assert isinstance(source, ClientCredentials)
    tokens = source.fetch()
    assert tokens.token_type == "Bearer"
    claims = verified_claims(served, tokens.access_token)
    assert claims["cnf"] == {"x5t#S256": thumbprint(setup.svc)}
    source.close()
    stranger = ClientCertificate(*setup.other.files, ca_file=str(served.pki.ca.cert_path))
    with (
        ClientCredentials(served.base, "svc", certificate=stranger) as other,
        pytest.raises(OAuthResponseError, match="invalid_client"),
    ):
        other.fetch()


def test_openid_client_through_a_client_certificate(setup: Setup) -> None:
    """panva's openid-client (Node) as the mTLS client: TlsClientAuth through the metadata's
    mtls_endpoint_aliases, its own fetch presenting the certificate; the bound token works at
    the API with the certificate and is refused without it."""
    _node_ready()
    served = setup.served
    assert served.pki is not None
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(served.pki.ca.cert_path)}
    done = subprocess.run(
        ["node", str(NODE_DIR / "mtls.mjs"), served.base, "svc", *setup.svc.files],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in answer, (answer, done.stderr[-2000:])
    result = answer["result"]
    assert result["token_type"].lower() == "bearer"
    assert result["with_certificate"] == 200
    assert result["hello"]["client_id"] == "svc"
    assert result["introspection_cnf"] == {"x5t#S256": thumbprint(setup.svc)}
    assert verified_claims(served, result["access_token"])["cnf"] == result["introspection_cnf"]
    assert result["without_certificate"] == 401
    assert 'error="invalid_token"' in result["challenge"]


def test_user_tokens_and_their_refreshes_are_bound(setup: Setup) -> None:
    """The authorization code grant of a tls_client_auth web client: the access token is bound
    to the certificate of the token request, and so is each one a refresh mints."""
    served = setup.served
    callback = "https://app.example/callback"
    served.cli(
        "client", "create", "--client-id", "web-mtls", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", callback, "--scope", "openid read",
        "--auth-method", "tls_client_auth", "--tls-san-dns", "svc.example",
    )  # fmt: skip
    served.cli("user", "create", "--username", "mtls-user", stdin="a-long-password-for-mtls\n")
    pkce = Pkce.new()
    with served.http() as browser:
        page = browser.get(
            "/authorize",
            params={
                "response_type": "code", "client_id": "web-mtls", "redirect_uri": callback,
                "scope": "openid read", "state": "s", "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            },
        )  # fmt: skip
        done = browser.post(
            "/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "mtls-user",
                "password": "a-long-password-for-mtls",
            },
        )
        done = browser.post(
            "/consent", data={"interaction": hidden_interaction(done.text), "decision": "approve"}
        )
        assert done.status_code == 302, done.text[:300]
        code = query_of(done.headers["location"])["code"]
    with served.http(setup.svc) as http:
        tokens = http.post(
            "/token",
            data={
                "grant_type": "authorization_code", "client_id": "web-mtls", "code": code,
                "redirect_uri": callback, "code_verifier": pkce.verifier,
            },
        )  # fmt: skip
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        bound = {"x5t#S256": thumbprint(setup.svc)}
        assert verified_claims(served, body["access_token"])["cnf"] == bound
        userinfo = http.get(
            "/userinfo", headers={"authorization": f"Bearer {body['access_token']}"}
        )
        assert userinfo.status_code == 200  # the userinfo endpoint checks the binding too
        refreshed = http.post(
            "/token",
            data={"grant_type": "refresh_token", "client_id": "web-mtls",
                  "refresh_token": body["refresh_token"]},
        )  # fmt: skip
        assert refreshed.status_code == 200, refreshed.text
        assert verified_claims(served, refreshed.json()["access_token"])["cnf"] == bound
    with served.http() as http:
        refused = http.get("/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    assert refused.status_code == 401


def test_dpop_and_mtls_side_by_side(setup: Setup) -> None:
    """A mixed deployment (docs/mtls.md): a client authenticated by its certificate that also
    sends a DPoP proof gets a DPoP-bound token (one token, one binding: cnf.jkt, no x5t#S256),
    and the same API takes it with its proof while taking certificate-bound tokens beside it."""
    base = setup.served.base
    key = DpopKey()

    def dpop_token() -> httpx.Response:
        with setup.served.http(setup.svc) as http:
            nonce: str | None = None
            for _ in range(2):  # RFC 9449 §8: at most one use_dpop_nonce retry
                response = http.post(
                    "/token",
                    data={"grant_type": "client_credentials", "client_id": "svc"},
                    headers={"dpop": key.proof("POST", f"{base}/token", nonce=nonce)},
                )
                if response.status_code != 400 or response.json()["error"] != "use_dpop_nonce":
                    return response
                nonce = response.headers["dpop-nonce"]
        raise AssertionError("the server asked for a DPoP nonce twice")

    issued = dpop_token()
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"
    access = issued.json()["access_token"]
    assert verified_claims(setup.served, access)["cnf"] == {"jkt": key.thumbprint}
    api = f"{base}/api/hello"
    with setup.served.http(None) as http:  # the DPoP key, not a certificate, proves it
        proof = key.proof("GET", api, access_token=access)
        answer = http.get(api, headers={"authorization": f"DPoP {access}", "dpop": proof})
        assert answer.status_code == 200, answer.text
        assert http.get(api, headers={"authorization": f"DPoP {access}"}).status_code == 401
    bound = setup.token("svc", setup.svc).json()["access_token"]
    with setup.served.http(setup.svc) as http:
        assert http.get(api, headers={"authorization": f"Bearer {bound}"}).status_code == 200


def test_requests_oauth2client_through_a_client_certificate(setup: Setup) -> None:
    """requests-oauth2client (a third-party client) as a tls_client_auth client: its requests
    session presents the certificate, the client sends only its client_id (RFC 8705 §2), and
    the bound token it gets works only over a session with the same certificate."""
    pki = setup.served.pki
    assert pki is not None
    base = setup.served.base
    with requests.Session() as session:
        session.trust_env = (
            False  # else REQUESTS_CA_BUNDLE overrides session.verify (requests#3829)
        )
        session.cert = setup.svc.files
        session.verify = str(pki.ca.cert_path)
        client = roc.OAuth2Client(
            token_endpoint=f"{base}/token", auth=roc.PublicApp("svc"), session=session
        )
        token = client.client_credentials(scope="read")
        assert isinstance(token, roc.BearerToken)
        claims = verified_claims(setup.served, token.access_token)
        assert claims["cnf"] == {"x5t#S256": thumbprint(setup.svc)}
        assert session.get(f"{base}/api/hello", auth=token).status_code == 200
    with requests.Session() as bare:
        bare.trust_env = False
        bare.verify = str(pki.ca.cert_path)
        refused = bare.get(f"{base}/api/hello", auth=token)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_a_client_registered_over_the_admin_api_authenticates_by_certificate(
    setup: Setup,
) -> None:
    """The admin API takes RFC 8705 metadata (docs/mtls.md): a tls_client_auth client created
    there, by its SAN, gets a token bound to its certificate, and no other certificate does."""
    served = setup.served
    admin_client = ("--grant-type", "client_credentials", "--scope", "tokenward:admin")
    ops = served.cli("client", "create", "--client-id", "ops-mtls", *admin_client)
    with served.http(None, auth=("ops-mtls", ops["client_secret"])) as http:
        admin = http.post(
            "/token", data={"grant_type": "client_credentials", "scope": "tokenward:admin"}
        )
    assert admin.status_code == 200, admin.text
    with served.http(None) as http:
        created = http.post(
            "/admin/api/clients",
            json={
                "client_id": "api-svc",
                "grant_types": ["client_credentials"],
                "scope": "read",
                "auth_method": "tls_client_auth",
                "tls_client_auth_san_dns": "svc.example",
            },
            headers={"authorization": f"Bearer {admin.json()['access_token']}"},
        )
    assert created.status_code == 201, created.text
    assert created.json()["tls_client_certificate_bound_access_tokens"] is True
    issued = setup.token("api-svc", setup.svc)
    assert issued.status_code == 200, issued.text
    claims = verified_claims(served, issued.json()["access_token"])
    assert claims["cnf"] == {"x5t#S256": thumbprint(setup.svc)}
    refused = setup.token("api-svc", setup.other)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
