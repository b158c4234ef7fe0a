"""DPoP proof creation for clients (RFC 9449 §4.2): one fresh signed proof per request."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tokenward.tokens import algorithms as algs
from tokenward.tokens.dpop import access_token_hash, jwk_thumbprint, normalised_htu
from tokenward.tokens.jwk import public_jwk
from tokenward.tokens.jws import sign_compact


class DpopKey:
    """An ES256 key pair held by the client. Its private half never leaves this object."""

    def __init__(
        self,
        private: ec.EllipticCurvePrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._private = private or ec.generate_private_key(ec.SECP256R1())
        jwk = public_jwk(self._private.public_key(), None, "ES256")
        self.jwk = {name: jwk[name] for name in ("kty", "crv", "x", "y")}
        self.thumbprint = jwk_thumbprint(self.jwk)
        self._sign = algs.signer(algs.algorithm("ES256"), self._private)
        self._clock = clock

    def __repr__(self) -> str:
        return f"DpopKey(jkt={self.thumbprint})"

    def proof(
        self, method: str, url: str, *, nonce: str | None = None, access_token: str | None = None
    ) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method.upper(),
            "htu": normalised_htu(url),
            "iat": int(self._clock()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        return sign_compact(header, orjson.dumps(claims), self._sign)

    def private_pem(self, password: bytes) -> bytes:
        """For storage: always encrypted."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )

    @classmethod
    def from_pem(
        cls, pem: bytes, password: bytes, *, clock: Callable[[], float] = time.time
    ) -> DpopKey:
        key = serialization.load_pem_private_key(pem, password=password)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("a DPoP key must be an EC P-256 private key")
        return cls(key, clock)
