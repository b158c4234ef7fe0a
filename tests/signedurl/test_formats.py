"""The edge formats, checked the way each edge checks them (recomputed here independently).

nginx is also proven against a real nginx in test_nginx_real.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.conftest import FrozenClock
from tests.signedurl.conftest import NOW
from tokenward.signedurl import SignedUrlError
from tokenward.signedurl.formats import CloudFrontSigner, EdgeAuthSigner, NginxSecureLink
from tokenward.signedurl.formats.cloudfront import canned_policy

AKAMAI_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
NGINX_SECRET = "nginx-secret-0123456789"


# --- Akamai EdgeAuth ---------------------------------------------------------------------------


def _edgeauth_hmac(message: str) -> str:
    return hmac.new(bytes.fromhex(AKAMAI_KEY), message.encode(), hashlib.sha256).hexdigest()


def test_edgeauth_acl_token(clock: FrozenClock) -> None:
    signer = EdgeAuthSigner(AKAMAI_KEY, clock=clock)
    token = signer.acl_token("/videos/abc/*", ttl=300)
    body = f"exp={NOW + 300}~acl=/videos/abc/*"
    assert token == f"{body}~hmac={_edgeauth_hmac(body)}"


def test_edgeauth_every_field_in_edgeauth_order(clock: FrozenClock) -> None:
    signer = EdgeAuthSigner(AKAMAI_KEY, clock=clock, salt="pepper")
    token = signer.acl_token(
        ["/a/*", "/b/*"],
        expires=NOW + 60,
        start_time=NOW - 5,
        ip="2001:DB8::1",
        session_id="s-1",
        payload="k=v",
    )
    body = f"ip=2001:db8::1~st={NOW - 5}~exp={NOW + 60}~acl=/a/*!/b/*~id=s-1~data=k=v"
    assert token == f"{body}~hmac={_edgeauth_hmac(body + '~salt=pepper')}"


def test_edgeauth_url_token_hashes_the_path_but_does_not_carry_it(clock: FrozenClock) -> None:
    signer = EdgeAuthSigner(AKAMAI_KEY, clock=clock)
    url = signer.sign_url("https://edge.example/v/a%c3%a9.mp4?x=1", ttl=30)
    body = f"exp={NOW + 30}"
    expected = f"{body}~hmac={_edgeauth_hmac(body + '~url=/v/a%C3%A9.mp4')}"
    assert url == f"https://edge.example/v/a%C3%A9.mp4?x=1&__token__={expected}"


@pytest.mark.parametrize(
    "arguments",
    [
        {"acl": "/a~b/*"},
        {"acl": "/a!b/*"},
        {"acl": []},
        {"acl": "/a/*", "session_id": "a&b"},
        {"acl": "/a/*", "payload": "x#y"},
        {"acl": "/a/*", "ip": "nope"},
        {"acl": "/a/*", "start_time": NOW + 600},
    ],
)
def test_edgeauth_refuses_what_it_cannot_write_unambiguously(
    clock: FrozenClock, arguments: dict[str, object]
) -> None:
    signer = EdgeAuthSigner(AKAMAI_KEY, clock=clock)
    with pytest.raises(SignedUrlError):
        signer.acl_token(ttl=300, **arguments)  # type: ignore[arg-type]


def test_edgeauth_keys() -> None:
    with pytest.raises(ValueError, match="hex"):
        EdgeAuthSigner("xyz")
    with pytest.raises(ValueError, match="16 bytes"):
        EdgeAuthSigner("abcd")
    assert AKAMAI_KEY not in repr(EdgeAuthSigner(AKAMAI_KEY))


# --- CloudFront canned policy ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cloudfront_b64decode(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")), validate=True)


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [("SHA1", hashes.SHA1()), ("SHA256", hashes.SHA256())],  # noqa: S303 - CloudFront's own
)
def test_cloudfront_canned_policy(
    clock: FrozenClock, rsa_key: rsa.RSAPrivateKey, algorithm: str, digest: hashes.HashAlgorithm
) -> None:
    signer = CloudFrontSigner("K2JCJMDEHXQW5F", rsa_key, hash_algorithm=algorithm, clock=clock)  # type: ignore[arg-type]
    base = "https://d111111abcdef8.cloudfront.net/image.jpg?color=red&size=medium"
    url = signer.sign_url(base, ttl=3600)
    prefix = f"{base}&Expires={NOW + 3600}&Signature="
    assert url.startswith(prefix)
    signature, _, rest = url[len(prefix) :].partition("&")
    expected_rest = "Key-Pair-Id=K2JCJMDEHXQW5F"
    if algorithm == "SHA256":
        expected_rest += "&Hash-Algorithm=SHA256"
    assert rest == expected_rest
    assert not set(signature) & set("+=/")
    # What CloudFront rebuilds from the request, written out by hand from its documentation:
    policy = (
        '{"Statement":[{"Resource":"' + base + '","Condition":{"DateLessThan":'
        '{"AWS:EpochTime":' + str(NOW + 3600) + "}}}]}"
    ).encode()
    assert canned_policy(base, NOW + 3600) == policy
    rsa_key.public_key().verify(
        _cloudfront_b64decode(signature), policy, padding.PKCS1v15(), digest
    )
    tampered = policy.replace(b"image.jpg", b"image.png")
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(
            _cloudfront_b64decode(signature), tampered, padding.PKCS1v15(), digest
        )


def test_cloudfront_without_a_query(clock: FrozenClock, rsa_key: rsa.RSAPrivateKey) -> None:
    signer = CloudFrontSigner("APKAEXAMPLE1", rsa_key, clock=clock)
    url = signer.sign_url("https://d1.cloudfront.net/a/b.mp4", expires=NOW + 10)
    assert url.startswith(f"https://d1.cloudfront.net/a/b.mp4?Expires={NOW + 10}&Signature=")
    assert json.loads(canned_policy("https://x/y", 5)) == {
        "Statement": [
            {"Resource": "https://x/y", "Condition": {"DateLessThan": {"AWS:EpochTime": 5}}}
        ]
    }


@pytest.mark.parametrize(
    "url",
    [
        "/relative/path",
        "https://d1.cloudfront.net/a b.mp4",
        'https://d1.cloudfront.net/a".mp4',
        "https://d1.cloudfront.net/é.mp4",
        "https://d1.cloudfront.net/a.mp4?Expires=1",
        "https://d1.cloudfront.net/a.mp4?key-pair-id=1",
        "https://d1.cloudfront.net/a.mp4#f",
    ],
)
def test_cloudfront_refuses_urls_it_would_sign_wrongly(
    clock: FrozenClock, rsa_key: rsa.RSAPrivateKey, url: str
) -> None:
    signer = CloudFrontSigner("APKAEXAMPLE1", rsa_key, clock=clock)
    with pytest.raises(SignedUrlError):
        signer.sign_url(url, ttl=60)


def test_cloudfront_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    with pytest.raises(ValueError, match="2048"):
        CloudFrontSigner("K1", small)
    with pytest.raises(ValueError, match="2048"):
        CloudFrontSigner("K1", ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key id"):
        CloudFrontSigner("k-1", rsa_key)
    with pytest.raises(ValueError, match="SHA1 or SHA256"):
        CloudFrontSigner("K1", rsa_key, hash_algorithm="MD5")  # type: ignore[arg-type]
    assert "PRIVATE" not in repr(CloudFrontSigner("K1", rsa_key))


# --- nginx secure_link (md5) -------------------------------------------------------------------


def _nginx_md5(text: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.md5(text).digest()).rstrip(b"=").decode()  # noqa: S324


def test_nginx_default_expression(clock: FrozenClock) -> None:
    link = NginxSecureLink(NGINX_SECRET, clock=clock)
    url = link.sign_url(
        "http://127.0.0.1:8080/media/caf%C3%A9.txt", ttl=60, remote_addr="127.0.0.1"
    )
    # nginx hashes the decoded $uri: UTF-8 bytes, not the escapes.
    expected = _nginx_md5(f"{NOW + 60}/media/café.txt127.0.0.1 {NGINX_SECRET}".encode())
    assert url == f"http://127.0.0.1:8080/media/caf%C3%A9.txt?md5={expected}&expires={NOW + 60}"


def test_nginx_custom_expression_and_parameter_names(clock: FrozenClock) -> None:
    link = NginxSecureLink(
        NGINX_SECRET,
        expression="${secret}:$uri:$secure_link_expires:$http_x_tenant",
        hash_param="st",
        expires_param="e",
        clock=clock,
    )
    assert not link.uses_remote_addr
    url = link.sign_url("/dl/a.zip?v=2", ttl=5, variables={"http_x_tenant": "acme"})
    expected = _nginx_md5(f"{NGINX_SECRET}:/dl/a.zip:{NOW + 5}:acme".encode())
    assert url == f"/dl/a.zip?v=2&st={expected}&e={NOW + 5}"
    with pytest.raises(SignedUrlError, match="http_x_tenant"):
        link.sign_url("/dl/a.zip", ttl=5)


@pytest.mark.parametrize(
    ("expression", "missing"),
    [
        ("$uri$remote_addr $secret", "secure_link_expires"),
        ("$secure_link_expires$remote_addr $secret", "uri"),
        ("$secure_link_expires$uri$remote_addr literal-secret", "secret"),
    ],
)
def test_nginx_expressions_that_would_be_unsafe(expression: str, missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        NginxSecureLink(NGINX_SECRET, expression=expression)


def test_nginx_inputs(clock: FrozenClock) -> None:
    link = NginxSecureLink(NGINX_SECRET, clock=clock)
    with pytest.raises(SignedUrlError, match="remote_addr"):
        link.sign_url("/media/a.txt", ttl=60)
    with pytest.raises(SignedUrlError, match="not an IP"):
        link.sign_url("/media/a.txt", ttl=60, remote_addr="localhost")
    with pytest.raises(SignedUrlError):
        link.sign_url("/media/../etc/passwd", ttl=60, remote_addr="127.0.0.1")
    with pytest.raises(ValueError, match="16 characters"):
        NginxSecureLink("short")
    with pytest.raises(ValueError, match="parameter names"):
        NginxSecureLink(NGINX_SECRET, hash_param="a&b")
    assert NGINX_SECRET not in repr(link)
    assert "$secret" in repr(link)
