"""The client SDK: httpx auth that refreshes silently, DPoP proofs, safe token storage.

A service calling an API: ``httpx.Client(auth=TokenAuth(ClientCredentials(issuer, id, secret)))``.
The guide is docs/client-sdk.md.
"""

from tokenward.client._flow import Http
from tokenward.client.auth import TokenAuth
from tokenward.client.device import DeviceAuthorization, DeviceCodeLogin
from tokenward.client.discovery import Discovery, ServerMetadata
from tokenward.client.dpop import DpopKey
from tokenward.client.errors import (
    AuthorizationError,
    ClientError,
    DiscoveryError,
    IdTokenError,
    InsecureStoreError,
    InsecureTransportError,
    LoginRequired,
    OAuthResponseError,
    ServerUnreachable,
    StepUpRequired,
    StoreError,
)
from tokenward.client.loopback import AuthorizationCodePKCE
from tokenward.client.storage import FileStore, KeyringStore, MemoryStore, TokenStore
from tokenward.client.tls import ClientCertificate
from tokenward.client.token_source import ClientCredentials, RefreshToken, TokenSource
from tokenward.client.tokens import TokenSet

__all__ = [
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
]
