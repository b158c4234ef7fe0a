"""Amazon CloudFront signed URLs with a canned policy.

The policy is `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":
<exp>}}}]}` with no whitespace; the signature is RSA PKCS#1 v1.5 over it with SHA-1 (every
distribution) or SHA-256 (key groups, announced by `Hash-Algorithm=SHA256`), in CloudFront's
base64 with `+ = /` replaced by `- _ ~`. The URL gains `Expires`, `Signature`, `Key-Pair-Id`.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tokenward.signedurl.canonical import split_url
from tokenward.signedurl.errors import malformed
from tokenward.signedurl.sign import expiry

MIN_RSA_BITS = 2048  # CloudFront accepts 2048-bit RSA public keys
_CLOUDFRONT_B64 = bytes.maketrans(b"+=/", b"-_~")
_KEY_PAIR_ID = re.compile(r"[A-Z0-9]{1,64}")
# CloudFront compares the policy's Resource with the URL it received: ask for it ready-encoded.
_URL_TEXT = re.compile(r"[!#-\[\]-~]+")  # printable ASCII without space, '"' and '\'
_SIGNING_PARAMS = frozenset({"expires", "signature", "key-pair-id", "policy", "hash-algorithm"})


class CloudFrontSigner:
    """Signs canned-policy URLs with one CloudFront key (a key group's key or a key pair)."""

    def __init__(
        self,
        key_pair_id: str,
        private_key: rsa.RSAPrivateKey,
        *,
        hash_algorithm: Literal["SHA1", "SHA256"] = "SHA1",
        clock: Callable[[], float] = time.time,
        max_ttl: int = 7 * 86400,
    ) -> None:
        if not _KEY_PAIR_ID.fullmatch(key_pair_id):
            raise ValueError("a CloudFront key id is upper-case letters and digits")
        if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"CloudFront signs with RSA keys of at least {MIN_RSA_BITS} bits")
        if hash_algorithm not in ("SHA1", "SHA256"):
            raise ValueError("hash_algorithm is SHA1 or SHA256")
        self.key_pair_id = key_pair_id
        self.hash_algorithm = hash_algorithm
        self._key = private_key
        self._clock = clock
        self._max_ttl = max_ttl

    def sign_url(self, url: str, *, ttl: int | None = None, expires: int | None = None) -> str:
        """`url` (absolute, percent-encoded, no fragment) with the canned-policy signature."""
        _check_url(url)
        exp = expiry(self._clock, ttl, expires, self._max_ttl)
        signature = self.signature(canned_policy(url, exp))
        params = f"Expires={exp}&Signature={signature}&Key-Pair-Id={self.key_pair_id}"
        if self.hash_algorithm == "SHA256":
            params += "&Hash-Algorithm=SHA256"
        return f"{url}{'&' if '?' in url else '?'}{params}"

    def signature(self, policy: bytes) -> str:
        algorithm: hashes.HashAlgorithm = (
            hashes.SHA1()  # noqa: S303 - CloudFront's original scheme; SHA256 is opt-in
            if self.hash_algorithm == "SHA1"
            else hashes.SHA256()
        )
        raw = self._key.sign(policy, padding.PKCS1v15(), algorithm)
        return base64.b64encode(raw).translate(_CLOUDFRONT_B64).decode("ascii")

    def __repr__(self) -> str:
        return f"CloudFrontSigner(key_pair_id={self.key_pair_id!r}, {self.hash_algorithm})"


def canned_policy(url: str, expires: int) -> bytes:
    """The canned policy bytes CloudFront rebuilds from the request and checks the signature of."""
    statement = {"Resource": url, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
    return json.dumps({"Statement": [statement]}, separators=(",", ":")).encode()


def _check_url(url: str) -> None:
    if not _URL_TEXT.fullmatch(url):
        raise malformed("a CloudFront URL is percent-encoded printable ASCII")
    origin, _, query = split_url(url)
    if not origin:
        raise malformed("a CloudFront canned policy signs an absolute URL")
    names = {piece.partition("=")[0].lower() for piece in query.split("&") if piece}
    if names & _SIGNING_PARAMS:
        raise malformed("the URL already carries CloudFront signing parameters")
