"""Every grant end to end over real HTTP on loopback, driven the way a user agent would."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import CALLBACK, PASSWORD, Live
from tests.server.flows import Pkce, hidden_interaction, query_of

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def code_flow(live: Live, http: httpx.Client, pkce: Pkce) -> dict[str, str]:
    page = http.get(
        f"{live.base}/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": CALLBACK,
            "scope": "openid profile read",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    )
    done = http.post(
        f"{live.base}/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    if done.status_code == 200:  # consent is asked once per user and client
        done = http.post(
            f"{live.base}/consent",
            data={"interaction": hidden_interaction(done.text), "decision": "approve"},
        )
    assert done.status_code == 302
    redirect = query_of(done.headers["location"])
    tokens = http.post(
        f"{live.base}/token",
        auth=("web", live.web_secret),
        data={
            "grant_type": "authorization_code",
            "code": redirect["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    body: dict[str, str] = tokens.json()
    return body


def test_client_credentials_then_api_then_revocation(live: Live) -> None:
    with httpx.Client() as http:
        token = http.post(
            f"{live.base}/token",
            auth=("service", live.service_secret),
            data={"grant_type": "client_credentials", "scope": "read"},
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        assert http.get(f"{live.base}/api/hello", headers=headers).status_code == 200
        introspect = http.post(
            f"{live.base}/introspect", auth=("service", live.service_secret), data={"token": token}
        )
        assert introspect.json()["active"] is True
        http.post(
            f"{live.base}/revoke", auth=("service", live.service_secret), data={"token": token}
        )
        assert http.get(f"{live.base}/api/hello", headers=headers).status_code == 401
        after = http.post(
            f"{live.base}/introspect", auth=("service", live.service_secret), data={"token": token}
        )
        assert after.json() == {"active": False}


def test_code_flow_refresh_rotation_and_reuse(live: Live) -> None:
    with httpx.Client() as http:
        tokens = code_flow(live, http, Pkce.new())
        rotated = http.post(
            f"{live.base}/token",
            auth=("web", live.web_secret),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        ).json()
        assert rotated["refresh_token"] != tokens["refresh_token"]
        http.post(
            f"{live.base}/token",
            auth=("web", live.web_secret),
            data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
        )
        # No wait needed: the grace only covers a repeat of the immediate predecessor.
        reuse = http.post(
            f"{live.base}/token",
            auth=("web", live.web_secret),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        userinfo = http.get(
            f"{live.base}/userinfo", headers={"authorization": f"Bearer {rotated['access_token']}"}
        )
        assert userinfo.status_code == 401  # the family's access tokens were revoked with it


def test_logout_ends_the_session(live: Live) -> None:
    with httpx.Client() as http:
        tokens = code_flow(live, http, Pkce.new())
        time.sleep(1.05)  # watermarks compare whole-second iat with the logout instant
        response = http.get(
            f"{live.base}/logout",
            params={
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": CALLBACK,
                "state": "x",
            },
        )
        assert response.status_code == 302
        assert (
            http.get(
                f"{live.base}/userinfo",
                headers={"authorization": f"Bearer {tokens['access_token']}"},
            ).status_code
            == 401
        )


def test_device_flow(live: Live) -> None:
    with httpx.Client() as http:
        start = http.post(
            f"{live.base}/device_authorization", data={"client_id": "tv", "scope": "read"}
        ).json()
        poll = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"], "client_id": "tv"}
        assert http.post(f"{live.base}/token", data=poll).json()["error"] == "authorization_pending"
        page = http.get(start["verification_uri_complete"])
        entered = http.post(
            f"{live.base}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "alice",
                "password": PASSWORD,
            },
        )
        confirm = http.post(
            f"{live.base}/device",
            data={"interaction": hidden_interaction(entered.text), "user_code": start["user_code"]},
        )
        http.post(
            f"{live.base}/device/decision",
            data={"interaction": hidden_interaction(confirm.text), "decision": "approve"},
        )
        time.sleep(start["interval"] + 0.1)  # RFC 8628 §3.5: respect the interval, or slow_down
        tokens = http.post(f"{live.base}/token", data=poll)
        assert tokens.status_code == 200, tokens.text
        assert tokens.json()["scope"] == "read"


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        (
            "/token",
            {
                "content": b"\x00\xff" * 10,
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
        ("/token", {"json": {"grant_type": "client_credentials"}}),
        (
            "/introspect",
            {
                "content": b"token=" + b"a" * 100_000,
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
        (
            "/authorize",
            {
                "params": {"client_id": "web", "redirect_uri": CALLBACK, "response_type": "code"},
                "method": "GET",
            },
        ),
        ("/logout", {"params": {"id_token_hint": "not.a.token"}, "method": "GET"}),
    ],
)
def test_bad_input_is_4xx_never_5xx(live: Live, path: str, kwargs: dict[str, object]) -> None:
    method = str(kwargs.pop("method", "POST"))
    with httpx.Client() as http:
        response = http.request(method, live.base + path, **kwargs)  # type: ignore[arg-type]
    # A valid client with a bad request is sent back to its redirect URI (302); all else is 4xx.
    assert 300 <= response.status_code < 500
    assert "Traceback" not in response.text
