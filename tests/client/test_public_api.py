"""The public surface of tokenward.client, pinned: a change here is a change for every user."""

from __future__ import annotations

import inspect

import httpx

from tokenward import client

PUBLIC = {
    "AuthorizationCodePKCE",
    "AuthorizationError",
    "ClientCertificate",
    "ClientCredentials",
    "ClientError",
    "DeviceAuthorization",
    "DeviceCodeLogin",
    "Discovery",
    "DiscoveryError",
    "DpopKey",
    "FileStore",
    "Http",
    "IdTokenError",
    "InsecureStoreError",
    "InsecureTransportError",
    "KeyringStore",
    "LoginRequired",
    "MemoryStore",
    "OAuthResponseError",
    "RefreshToken",
    "ServerMetadata",
    "ServerUnreachable",
    "StepUpRequired",
    "StoreError",
    "TokenAuth",
    "TokenSet",
    "TokenSource",
    "TokenStore",
}


def test_exports() -> None:
    assert set(client.__all__) == PUBLIC
    assert all(hasattr(client, name) for name in PUBLIC)


def test_shapes() -> None:
    assert issubclass(client.TokenAuth, httpx.Auth)
    for name in ("sync_auth_flow", "async_auth_flow", "token", "atoken"):
        assert callable(getattr(client.TokenAuth, name))
    for source in (client.ClientCredentials, client.RefreshToken, client.DeviceCodeLogin):
        assert issubclass(source, client.TokenSource)
    for method in ("fetch", "afetch", "refresh", "arefresh", "close", "aclose"):
        assert callable(getattr(client.TokenSource, method))
    for method in ("start", "astart", "poll", "apoll", "login", "alogin"):
        assert callable(getattr(client.DeviceCodeLogin, method))
    assert inspect.iscoroutinefunction(client.AuthorizationCodePKCE.alogin)
    errors = [client.LoginRequired, client.OAuthResponseError, client.AuthorizationError]
    errors += [client.DiscoveryError, client.StoreError, client.InsecureStoreError]
    errors += [client.IdTokenError]
    assert all(issubclass(error, client.ClientError) for error in errors)
    skew = inspect.signature(client.TokenAuth).parameters["skew"].default
    assert skew == 30.0
