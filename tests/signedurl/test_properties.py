"""Properties of canonicalisation over generated URLs (hypothesis).

A link that verifies keeps verifying under any harmless respelling (escape case, unreserved
characters encoded or not, parameter order, the regex fast path or the general parser); any
change of path, expiry or bound address breaks it; and no input whatever makes verification
raise instead of answering with a reason.
"""

from __future__ import annotations

import hmac
import ipaddress
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FrozenClock
from tests.signedurl.conftest import NOW, SECRET_1, SECRET_2, split
from tokenward.signedurl import KeySet, Reason, SignedUrlError, SigningKey, UrlSigner, Verifier
from tokenward.signedurl.canonical import canonical_path, split_query
from tokenward.signedurl.mac import HmacSha256
from tokenward.signedurl.verify import _FAST_LINK

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
CLOCK = FrozenClock(NOW)
KEYS = KeySet(SigningKey("k1", SECRET_1), [SigningKey("k0", SECRET_2)])
SIGNER = UrlSigner(KEYS, clock=CLOCK)
VERIFIER = Verifier(KEYS, clock=CLOCK)

# Segment text: anything but `/`, `%`, `\` and controls; dot-only segments are left out.
segment_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/%\\"),
    min_size=1,
    max_size=12,
).filter(lambda text: text.strip(".") != "" and text.partition(";")[0] not in (".", ".."))
# `?` and `#` would end the path, so they are written as escapes; everything else may be raw.
paths = st.lists(segment_text, min_size=1, max_size=5).map(
    lambda parts: ("/" + "/".join(parts)).replace("?", "%3F").replace("#", "%23")
)
names = st.text(UNRESERVED + "!$'()*,:@/?", min_size=1, max_size=8).filter(
    lambda name: not name.lower().startswith("tw_")
)
values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="&;#%"), max_size=10
)
queries = st.dictionaries(names.map(str.lower), values, max_size=4)
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)


def _quote_unit(char: str) -> str:
    return "%" + "".join(random.choice((c.lower(), c.upper())) for c in f"{ord(char):02X}")


def respell(text: str, rng: random.Random) -> str:
    """Encode some unreserved characters, and flip the hex case of some escapes."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "%":
            escape = text[index + 1 : index + 3]
            out.append("%" + (escape.lower() if rng.random() < 0.5 else escape.upper()))
            index += 3
            continue
        out.append(_quote_unit(char) if char in UNRESERVED and rng.random() < 0.3 else char)
        index += 1
    return "".join(out)


def _query_text(query: dict[str, str]) -> str:
    return "&".join(f"{name}={value}" for name, value in query.items())


@PROPERTY
@given(path=paths, query=queries, seed=st.integers(0, 2**32))
def test_harmless_respelling_keeps_a_link_valid(
    path: str, query: dict[str, str], seed: int
) -> None:
    query_text = _query_text(query)
    url = SIGNER.sign_url(path + ("?" + query_text if query_text else ""), ttl=60)
    signed_path, signed_query = split(url)
    assert VERIFIER.verify_request(signed_path, signed_query, None).ok
    rng = random.Random(seed)
    pieces = [respell(piece, rng) for piece in signed_query.split("&")]
    rng.shuffle(pieces)
    verdict = VERIFIER.verify_request(respell(signed_path, rng), "&".join(pieces), None)
    assert verdict.ok, (signed_path, signed_query)


@PROPERTY
@given(path=paths, other=paths, delta=st.integers(-(10**6), 10**6).filter(bool))
def test_changing_path_or_expiry_breaks_a_link(path: str, other: str, delta: int) -> None:
    signed_path, query = split(SIGNER.sign_url(path, ttl=60))
    moved = canonical_path(other)
    if moved != signed_path:
        assert VERIFIER.verify_request(other, query, None).reason is Reason.BAD_SIGNATURE
    exp = NOW + 60
    shifted = query.replace(f"tw_exp={exp}", f"tw_exp={exp + delta}")
    assert VERIFIER.verify_request(signed_path, shifted, None).reason is Reason.BAD_SIGNATURE


@PROPERTY
@given(bound=addresses, client=addresses, path=paths)
def test_changing_the_address_breaks_a_bound_link(bound: str, client: str, path: str) -> None:
    signed_path, query = split(SIGNER.sign_url(path, ttl=60, client_ip=bound))
    assert VERIFIER.verify_request(signed_path, query, bound).ok
    verdict = VERIFIER.verify_request(signed_path, query, client)
    same = _same_address(bound, client)
    assert verdict.ok is same
    if not same:
        assert verdict.reason is Reason.WRONG_IP
        # Rewriting the bound address in the link itself is a forgery.
        written = next(p for p in query.split("&") if p.startswith("tw_ip="))
        forged = query.replace(written, f"tw_ip={client}")
        assert VERIFIER.verify_request(signed_path, forged, client).reason in (
            Reason.BAD_SIGNATURE,
            Reason.MALFORMED,
        )


def _same_address(left: str, right: str) -> bool:
    def unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address

    return unmapped(left) == unmapped(right)


@PROPERTY
@given(path=st.text(max_size=40), query=st.text(max_size=80), client=st.text(max_size=20))
def test_arbitrary_input_gets_a_reason_never_an_exception(
    path: str, query: str, client: str
) -> None:
    verdict = VERIFIER.verify_request(path, query, client)
    assert verdict.reason is not None


@PROPERTY
@given(path=st.text(max_size=40), query=st.text(max_size=60))
def test_canonical_forms_are_fixed_points(path: str, query: str) -> None:
    try:
        canonical = canonical_path(path)
    except SignedUrlError:
        pass
    else:
        assert canonical_path(canonical) == canonical
    try:
        _, others = split_query(query)
    except SignedUrlError:
        pass
    else:
        assert split_query("&".join(others))[1] == others


@PROPERTY
@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=300))
def test_prekeyed_hmac_equals_hmac_digest(key: bytes, message: bytes) -> None:
    assert HmacSha256(key).digest(message) == hmac.digest(key, message, "sha256")


@PROPERTY
@given(
    path=paths,
    subject=st.none() | st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
    bound=st.none() | addresses,
    not_before=st.none() | st.integers(NOW - 100, NOW + 50),
    prefix=st.booleans(),
    now=st.integers(NOW - 200, NOW + 200),
    client=addresses,
)
def test_fast_and_general_parsers_agree(
    path: str,
    subject: str | None,
    bound: str | None,
    not_before: int | None,
    prefix: bool,
    now: int,
    client: str,
) -> None:
    bound_signer = SIGNER.bind(ttl=60, not_before=not_before, client_ip=bound, subject=subject)
    if prefix:
        directory = canonical_path(path).rsplit("/", 1)[0] + "/"
        signed_path, query = split(bound_signer.sign_prefix(directory).url(directory + "x.ts"))
    else:
        signed_path, query = split(bound_signer.sign_url(path))
        assert _FAST_LINK.fullmatch(query) is not None  # the signer's own shape takes the regex
    general = query.replace("tw_exp=", "tw%5Fexp=")  # same link; the regex no longer matches
    assert VERIFIER.verify_request(signed_path, query, client, now) == VERIFIER.verify_request(
        signed_path, general, client, now
    )
