"""Signed URLs for CDNs and streaming: a bearer call buys short-lived links an edge checks cheaply.

Public API (pinned by tests/signedurl/test_public_api.py); see docs/signed-urls.md.
"""

from tokenward.signedurl.errors import Reason, SignedUrlError
from tokenward.signedurl.keys import KeySet, SigningKey
from tokenward.signedurl.sign import BoundSigner, PrefixGrant, UrlSigner
from tokenward.signedurl.verify import Verdict, Verifier, verify_request

__all__ = [
    "BoundSigner",
    "KeySet",
    "PrefixGrant",
    "Reason",
    "SignedUrlError",
    "SigningKey",
    "UrlSigner",
    "Verdict",
    "Verifier",
    "verify_request",
]
