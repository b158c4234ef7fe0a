"""DPoP's `htu` comparison (RFC 9449 §4.3): both sides go through one normal form (RFC 3986
§6.2.2 and §6.2.3). Equivalent spellings compare equal; different paths, an encoded slash
among them, never do; what cannot be normalised soundly is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tokenward.tokens.dpop import DpopError, normalised_htu
from tokenward.tokens.htu import MAX_LENGTH, _normalised, normalise

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
SUB_DELIMS = "!$&'()*+,;=:@"
# Characters a path must hold escaped: the delimiters and what a URI may never hold raw.
ESCAPED_ONLY = '/?#[]% "<>\\^`{|}é€'


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("HTTPS://AS.Example/token", "https://as.example/token"),
        ("https://as.example:443/token", "https://as.example/token"),
        ("http://as.example:80/token", "http://as.example/token"),
        ("https://as.example:/token", "https://as.example/token"),
        ("https://as.example", "https://as.example/"),
        ("https://as.example:8443/token", "https://as.example:08443/token"),
        ("https://as.example/%7Etoken", "https://as.example/~token"),
        ("https://as.example/%74oken", "https://as.example/token"),
        ("https://as.example/a%2fb", "https://as.example/a%2Fb"),
        ("https://as.example/a/./b/../token", "https://as.example/a/token"),
        ("https://as.example/a/%2E%2e/token", "https://as.example/token"),
        ("https://as.example/../token", "https://as.example/token"),
        ("https://as.example/a b|c", "https://as.example/a%20b%7Cc"),
        ("https://as.example/caf\u00e9", "https://as.example/caf%C3%A9"),
        ("https://as.example/token?x=1#f", "https://as.example/token"),
        ("http://[::1]:8080/a?b", "http://[::1]:8080/a"),
        ("http://[2001:DB8::1]/a", "http://[2001:db8::1]/a"),
    ],
)
def test_equivalent_spellings_compare_equal(left: str, right: str) -> None:
    assert normalised_htu(left) == normalised_htu(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("https://as.example/a%2Fb", "https://as.example/a/b"),  # an encoded slash: a name
        ("https://as.example/a%3Bb", "https://as.example/a;b"),  # reserved: escapes differ
        ("https://as.example/token", "https://as.example/token/"),
        ("https://as.example/a//b", "https://as.example/a/b"),
        ("https://as.example/Token", "https://as.example/token"),  # paths keep their case
        ("https://as.example/token", "http://as.example/token"),
        ("https://as.example:8443/token", "https://as.example/token"),
        ("https://as.example/token", "https://as.example.evil/token"),
        ("https://as.example/%2E%2E%2Ftoken", "https://as.example/token"),
    ],
)
def test_different_resources_never_compare_equal(left: str, right: str) -> None:
    assert normalised_htu(left) != normalised_htu(right)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://as.example/to\tken", "control characters"),  # urlsplit would drop the tab
        ("https://as.example/to\nken", "control characters"),
        ("https://evil@as.example/token", "userinfo"),
        ("ftp://as.example/token", "not an http(s) URL"),
        ("/token", "not an absolute URL"),
        ("https:/as.example/token", "not an absolute URL"),
        ("https:///token", "host"),
        ("https://as.example:65536/token", "port"),
        ("https://as.example:4x3/token", "port"),
        ("https://as.example/%zz", "percent-escape"),
        ("https://as.example/%e", "percent-escape"),
        ("https://[::1/token", "IPv6"),
        ("https://as.example/" + "a" * MAX_LENGTH, "too long"),
    ],
)
def test_what_cannot_be_normalised_soundly_is_refused(url: str, why: str) -> None:
    with pytest.raises(DpopError, match=re.escape(why)):
        normalised_htu(url)


# --- properties ---------------------------------------------------------------------------
HOSTS = st.one_of(
    st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=3).map(".".join),
    st.sampled_from(["[::1]", "[2001:db8::1]", "127.0.0.1"]),
)
# One character of a path segment: (normal spelling, character).
ATOMS = st.one_of(
    st.sampled_from(UNRESERVED + SUB_DELIMS).map(lambda c: (c, c)),
    st.sampled_from(ESCAPED_ONLY).map(lambda c: ("".join(f"%{b:02X}" for b in c.encode()), c)),
)
SEGMENTS = st.lists(
    st.lists(ATOMS, max_size=6).filter(
        lambda atoms: "".join(a[0] for a in atoms) not in {".", ".."}
    ),
    max_size=5,
)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """(the normal form, one random spelling of it)."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(HOSTS)
    port = draw(st.none() | st.integers(1, 65535).filter(lambda p: p not in (80, 443)))
    segments = draw(SEGMENTS)
    normal_path = "/" + "/".join("".join(a[0] for a in atoms) for atoms in segments)
    normal = f"{scheme}://{host}{'' if port is None else f':{port}'}{normal_path}"

    def case(text: str) -> str:
        return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)

    def hex_byte(byte: int) -> str:
        return "%" + case(f"{byte:02x}")

    def spell(normal_text: str, char: str) -> str:
        if char in UNRESERVED:
            return hex_byte(ord(char)) if draw(st.booleans()) else char
        if normal_text.startswith("%"):
            raw_ok = char not in "/?#%" and draw(st.booleans())
            return char if raw_ok else "".join(hex_byte(b) for b in char.encode())
        return char

    spelled_segments = ["".join(spell(n, c) for n, c in atoms) for atoms in segments]
    dots = st.sampled_from([".", "%2e", "%2E"])
    pieces: list[str] = [draw(dots) + draw(dots) for _ in range(draw(st.integers(0, 2)))]
    for segment in spelled_segments:
        # Dot segments go before a real one (at the end they would add a trailing slash).
        if draw(st.booleans()):
            pieces.append(draw(dots))
        if draw(st.booleans()):
            pieces.extend(["junk", draw(dots) + draw(dots)])
        pieces.append(segment)
    path = "/" + "/".join(pieces) if bool(pieces) or draw(st.booleans()) else ""
    default = {"http": 80, "https": 443}[scheme]
    shown_port = (
        draw(st.sampled_from(["", ":", f":{default}"]))
        if port is None
        else ":" + "0" * draw(st.integers(0, 2)) + str(port)
    )
    spelling = f"{case(scheme)}://{case(host)}{shown_port}{path}"
    spelling += draw(st.sampled_from(["", "?q=1", "#frag", "?a=/../b#c"]))
    return normal, spelling


@given(urls())
@example(("https://as.example/a%2Fb", "HTTPS://AS.EXAMPLE:443/./x/%2E%2E/a%2fb?q"))
def test_every_spelling_normalises_to_the_normal_form(case: tuple[str, str]) -> None:
    normal, spelling = case
    assert normalise(normal) == normal  # the normal form is a fixed point
    assert normalise(spelling) == normal
    assert _normalised(normal) == normal  # the fast path agrees with the full one


def split(normal: str) -> tuple[str, str]:
    """(origin, path) of a normal form."""
    at = normal.index("/", normal.index("://") + 3)
    return normal[:at], normal[at:]


@given(urls(), urls())
def test_different_paths_never_compare_equal(one: tuple[str, str], other: tuple[str, str]) -> None:
    (normal, spelling), (other_normal, other_spelling) = one, other
    origin, path = split(normal)
    assume(path != split(other_normal)[1])
    assert normalise(spelling) != normalise(other_spelling)
    # The other path on this origin is still another resource.
    assert normalise(spelling) != normalise(origin + split(other_normal)[1])


@given(st.text(max_size=200))
def test_any_text_is_normalised_or_refused_and_normal_forms_are_stable(text: str) -> None:
    for url in (text, "https://as.example/" + text, "http://" + text):
        try:
            normal = normalise(url)
        except ValueError:
            continue
        assert normalise(normal) == normal
        assert "?" not in normal
        assert "#" not in normal
