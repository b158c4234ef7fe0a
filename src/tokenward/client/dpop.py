"""DPoP proof creation for clients (RFC 9449 §4.2): one fresh signed proof per request."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa

from tokenward.tokens import algorithms as algs
from tokenward.tokens.dpop import access_token_hash, jwk_thumbprint, normalised_htu
from tokenward.tokens.jwk import public_jwk
from tokenward.tokens.jws import sign_compact

_ML_DSA_PRIVATE = (mldsa.MLDSA44PrivateKey, mldsa.MLDSA65PrivateKey, mldsa.MLDSA87PrivateKey)
DpopPrivateKey = ec.EllipticCurvePrivateKey | algs.MlDsaPrivateKey


class DpopKey:
    """A key pair held by the client: ES256 (P-256), or ML-DSA-44/65/87 (RFC 9964) where the
    server lists it in `dpop_signing_alg_values_supported`. Its private half never leaves
    this object."""

    def __init__(
        self,
        private: DpopPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._private: DpopPrivateKey = private or ec.generate_private_key(ec.SECP256R1())
        if isinstance(self._private, ec.EllipticCurvePrivateKey):
            self.alg = "ES256"
            jwk = public_jwk(self._private.public_key(), None, self.alg)
            self.jwk = {name: jwk[name] for name in ("kty", "crv", "x", "y")}
        else:
            self.alg = next(
                name
                for name, params in algs.ML_DSA.items()
                if isinstance(self._private, params.private_class)
            )
            jwk = public_jwk(self._private.public_key(), None, self.alg)
            self.jwk = {name: jwk[name] for name in ("kty", "alg", "pub")}  # RFC 9964: alg
        self.thumbprint = jwk_thumbprint(self.jwk)
        self._sign = algs.signer(algs.algorithm(self.alg), self._private)
        self._clock = clock

    @classmethod
    def generate(cls, alg: str = "ES256", *, clock: Callable[[], float] = time.time) -> DpopKey:
        """A new key for `alg`: ES256, ML-DSA-44, ML-DSA-65 or ML-DSA-87."""
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), clock)
        if alg not in algs.ML_DSA:
            raise ValueError(f"DPoP keys are ES256 or ML-DSA-44/65/87, not {alg!r}")
        return cls(algs.ML_DSA[alg].private_class.generate(), clock)

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
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
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
        if isinstance(key, _ML_DSA_PRIVATE):
            return cls(key, clock)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise TypeError("a DPoP key must be an EC P-256 or an ML-DSA private key")
        return cls(key, clock)
