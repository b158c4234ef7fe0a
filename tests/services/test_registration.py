"""Dynamic registration and the operator's `client create` share one validation path
(ClientAdmin.build_client): the same bad metadata is refused by both, with the same words."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.oauth.jar_setup import new_key
from tokenward.config import Settings
from tokenward.deploy.wiring import Services, build_services, memory_stores
from tokenward.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from tokenward.services.errors import AdminError
from tokenward.tokens.sealing import generate_master_key

pytestmark = pytest.mark.anyio

# (dynamic registration metadata, the same as `client create` keywords, the RFC 7591 refusal)
SAME_RULES: dict[str, tuple[dict[str, Any], dict[str, Any], type[OAuthError]]] = {
    "http redirect off loopback": (
        {"redirect_uris": ["http://app.example/cb"]},
        {"grant_types": ["authorization_code"], "redirect_uris": ["http://app.example/cb"]},
        InvalidRedirectUri,
    ),
    "userinfo in a redirect": (
        {"redirect_uris": ["https://good.example@evil.example/cb"]},
        {
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://good.example@evil.example/cb"],
        },
        InvalidRedirectUri,
    ),
    "jwks and jwks_uri": (
        {
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [new_key().export_public(as_dict=True)]},
            "jwks_uri": "https://app.example/jwks",
        },
        {
            "grant_types": ["client_credentials"],
            "auth_method": "private_key_jwt",
            "jwks": json.dumps({"keys": [new_key().export_public(as_dict=True)]}),
            "jwks_uri": "https://app.example/jwks",
        },
        InvalidClientMetadata,
    ),
    "private_key_jwt without keys": (
        {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"},
        {"grant_types": ["client_credentials"], "auth_method": "private_key_jwt"},
        InvalidClientMetadata,
    ),
    "public client_credentials": (
        {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"},
        {"grant_types": ["client_credentials"], "public": True, "auth_method": "none"},
        InvalidClientMetadata,
    ),
    "symmetric ID token algorithm": (
        {"redirect_uris": ["https://app.example/cb"], "id_token_signed_response_alg": "HS256"},
        {
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/cb"],
            "id_token_signed_response_alg": "HS256",
        },
        InvalidClientMetadata,
    ),
    "signed request objects without keys": (
        {"redirect_uris": ["https://app.example/cb"], "require_signed_request_object": True},
        {
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/cb"],
            "require_signed_request_object": True,
        },
        InvalidClientMetadata,
    ),
    "http back-channel logout": (
        {
            "redirect_uris": ["https://app.example/cb"],
            "backchannel_logout_uri": "http://app.example/logout",
        },
        {
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/cb"],
            "backchannel_logout_uri": "http://app.example/logout",
        },
        InvalidClientMetadata,
    ),
}


@pytest.fixture
async def services() -> Services:
    settings = Settings(
        master_key=generate_master_key(),
        registration="open",
        registration_scopes="openid read",
        registration_rate="1000/h",
    )
    return await build_services(settings, memory_stores())


@pytest.mark.parametrize("case", sorted(SAME_RULES))
async def test_dynamic_registration_is_as_strict_as_client_create(
    services: Services, case: str
) -> None:
    metadata, keywords, refusal = SAME_RULES[case]
    with pytest.raises(AdminError) as by_operator:
        await services.client_admin.create_client(
            "operator-made", **{"scope": "read", "redirect_uris": [], **keywords}
        )

    with pytest.raises(refusal) as by_registration:
        await services.registration.register(metadata, None, "192.0.2.1")

    assert by_registration.value.description == str(by_operator.value)
    assert await services.stores.clients.list_all() == []
