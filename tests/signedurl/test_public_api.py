"""The public surface the gateway's `signed_url` mode builds on; change it on purpose."""

from __future__ import annotations

import inspect

from tokenward import signedurl
from tokenward.signedurl import Reason, Verifier, verify_request
from tokenward.signedurl.formats import __all__ as formats


def test_public_names() -> None:
    assert sorted(signedurl.__all__) == [
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
    assert sorted(formats) == ["CloudFrontSigner", "EdgeAuthSigner", "NginxSecureLink"]


def test_the_gateway_entry_point_signature() -> None:
    method = inspect.signature(Verifier.verify_request)
    assert list(method.parameters) == ["self", "path", "query", "client_ip", "now"]
    function = inspect.signature(verify_request)
    assert list(function.parameters)[:4] == ["path", "query", "client_ip", "now"]


def test_reasons_and_their_statuses() -> None:
    assert {reason.value: reason.status for reason in Reason} == {
        "missing": 403,
        "malformed": 400,
        "unknown_key": 403,
        "bad_signature": 403,
        "expired": 410,
        "not_yet_valid": 403,
        "wrong_ip": 403,
        "wrong_path": 403,
    }
