"""Interop: Authlib (a standards-strict Python OAuth/OIDC client) against our server over HTTP.

Authlib validates RFC 8414 / OIDC discovery metadata, state, PKCE, and the ID token's iss, aud,
nonce, at_hash, exp and iat by its own rules, not ours.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from tests.e2e.conftest import CALLBACK, PASSWORD, Live
from tests.server.flows import hidden_interaction
from tokenward.tokens.jwk import public_jwk


def metadata(live: Live) -> dict[str, object]:
    document: dict[str, object] = httpx.get(f"{live.base}/.well-known/openid-configuration").json()
    return document


def test_discovery_documents_validate(live: Live) -> None:
    oidc = OpenIDProviderMetadata(metadata(live))
    oidc.validate()
    oauth = AuthorizationServerMetadata(
        httpx.get(f"{live.base}/.well-known/oauth-authorization-server").json()
    )
    oauth.validate()
    assert oidc["issuer"] == oauth["issuer"] == live.base


def test_code_flow_with_pkce_and_id_token_validation(live: Live) -> None:
    meta = metadata(live)
    client = OAuth2Client(
        client_id="web",
        client_secret=live.web_secret,
        redirect_uri=CALLBACK,
        scope="openid profile read",
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = "v" * 20 + "erifier-" + "x" * 30
    nonce = "nonce-authlib"
    url, state = client.create_authorization_url(
        str(meta["authorization_endpoint"]), code_verifier=verifier, nonce=nonce
    )
    with httpx.Client() as browser:  # the user agent, with its own cookies
        page = browser.get(url)
        consent = browser.post(
            f"{live.base}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "alice",
                "password": PASSWORD,
            },
        )
        callback = browser.post(
            f"{live.base}/consent",
            data={"interaction": hidden_interaction(consent.text), "decision": "approve"},
        )
    token = client.fetch_token(
        str(meta["token_endpoint"]),
        authorization_response=callback.headers["location"],
        code_verifier=verifier,
        state=state,
    )
    keys = JsonWebKey.import_key_set(httpx.get(str(meta["jwks_uri"])).json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": live.base}},
        claims_params={"nonce": nonce, "client_id": "web", "access_token": token["access_token"]},
    )
    claims.validate(now=int(time.time()))  # aud, exp, iat, nonce, at_hash, auth_time
    assert claims["sid"]
    refreshed = client.refresh_token(
        str(meta["token_endpoint"]), refresh_token=token["refresh_token"]
    )
    assert refreshed["refresh_token"] != token["refresh_token"]
    introspected = client.introspect_token(
        str(meta["introspection_endpoint"]), token=refreshed["access_token"]
    )
    assert introspected.json()["active"] is True
    client.revoke_token(
        str(meta["revocation_endpoint"]),
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    after = client.introspect_token(
        str(meta["introspection_endpoint"]),
        token=refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert after.json() == {"active": False}
    client.close()


def test_client_credentials_with_post_and_private_key_jwt(live: Live) -> None:
    meta = metadata(live)
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [public_jwk(key.public_key(), "k1", "ES256")]}

    async def register() -> str:
        created = await live.services.client_admin.create_client(
            "pkjwt",
            grant_types=["client_credentials"],
            scope="read",
            redirect_uris=[],
            jwks=orjson.dumps(jwks).decode(),
        )
        return str(created["client_id"])

    asyncio.run(register())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    client = OAuth2Client(
        client_id="pkjwt",
        client_secret=ECKey.import_key(pem),
        token_endpoint_auth_method=PrivateKeyJWT(
            token_endpoint=str(meta["token_endpoint"]), alg="ES256", headers={"kid": "k1"}
        ),
    )
    token = client.fetch_token(str(meta["token_endpoint"]), grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    client.close()
    poster = asyncio.run(
        live.services.client_admin.create_client(
            "poster",
            grant_types=["client_credentials"],
            scope="read",
            redirect_uris=[],
            auth_method="client_secret_post",
        )
    )
    post_client = OAuth2Client(
        client_id="poster",
        client_secret=str(poster["client_secret"]),
        token_endpoint_auth_method="client_secret_post",
    )
    assert post_client.fetch_token(str(meta["token_endpoint"]), grant_type="client_credentials")[
        "access_token"
    ]
    post_client.close()
