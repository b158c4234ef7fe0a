"""Two authorization servers as separate processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster
from tests.server.flows import Pkce, hidden_interaction, query_of

CALLBACK = "https://app.example/cb"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cluster"), refresh_reuse_grace="0") as group:
        yield group


def service(group: Cluster) -> tuple[str, str]:
    if not hasattr(group, "_service"):
        group._service = group.service_client()  # type: ignore[attr-defined]
    return group._service  # type: ignore[attr-defined,no-any-return]


def test_token_from_node_a_passes_at_node_b(nodes: Cluster) -> None:
    a, b = nodes.nodes
    token = httpx.post(
        f"{a}/token", data={"grant_type": "client_credentials"}, auth=service(nodes)
    ).json()
    response = httpx.get(
        f"{b}/api/hello", headers={"authorization": f"Bearer {token['access_token']}"}
    )
    assert response.status_code == 200, response.text


def test_revocation_at_a_is_rejected_at_b_within_milliseconds(nodes: Cluster) -> None:
    a, b = nodes.nodes
    token = httpx.post(
        f"{a}/token", data={"grant_type": "client_credentials"}, auth=service(nodes)
    ).json()
    headers = {"authorization": f"Bearer {token['access_token']}"}
    with httpx.Client() as http:
        assert http.get(f"{b}/api/hello", headers=headers).status_code == 200  # cached at B now
        http.post(f"{a}/revoke", data={"token": token["access_token"]}, auth=service(nodes))
        revoked_at = time.monotonic()
        while http.get(f"{b}/api/hello", headers=headers).status_code == 200:
            # Well under the 2 s periodic resync: the push (Redis pub/sub) delivered it.
            assert time.monotonic() - revoked_at < 1.5, "node B still accepts the revoked token"


def test_refresh_race_across_nodes_has_one_winner(nodes: Cluster) -> None:
    a, b = nodes.nodes
    created = json.loads(
        nodes.cli(
            "client",
            "create",
            "--client-id",
            "web",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid read",
            "--redirect-uri",
            CALLBACK,
            "--skip-consent",
        )
    )
    nodes.cli("user", "create", "--username", "dana", "--password-stdin", stdin="dana's password\n")
    pkce = Pkce.new()
    with httpx.Client() as browser:
        page = browser.get(
            f"{a}/authorize",
            params={
                "response_type": "code",
                "client_id": "web",
                "redirect_uri": CALLBACK,
                "scope": "openid read",
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            },
        )
        done = browser.post(
            f"{a}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "dana",
                "password": "dana's password",
            },
        )
    code = query_of(done.headers["location"])["code"]
    auth = ("web", created["client_secret"])
    tokens = httpx.post(
        f"{b}/token",
        auth=auth,
        data={  # the code, issued at A, redeemed at B
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    ).json()

    async def race() -> list[int]:
        async with httpx.AsyncClient() as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{node}/token",
                        auth=auth,
                        data={
                            "grant_type": "refresh_token",
                            "refresh_token": tokens["refresh_token"],
                        },
                    )
                    for node in (a, b, a, b)
                )
            )
        return sorted(answer.status_code for answer in answers)

    statuses = asyncio.run(race())
    assert statuses.count(200) == 1, statuses  # exactly one rotation wins; the rest are reuse
    assert all(status == 400 for status in statuses if status != 200)


def test_nodes_share_keys_and_publish_the_same_jwks(nodes: Cluster) -> None:
    a, b = nodes.nodes
    assert httpx.get(f"{a}/jwks").json() == httpx.get(f"{b}/jwks").json()
    assert httpx.get(f"{a}/.well-known/openid-configuration").json()["issuer"] == nodes.issuer
