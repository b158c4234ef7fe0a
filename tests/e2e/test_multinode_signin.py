"""The sign-in throttle across two server processes sharing PostgreSQL and Redis: failures at
either node count against one allowance, and restarting a node does not reset it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster
from tests.server.flows import Pkce, hidden_interaction

CALLBACK = "https://app.example/cb"
PAIR_LIMIT = 5  # failures of one username from one address (core/throttle.py SignInLimits)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("signin")) as group:
        group.cli(
            "client",
            "create",
            "--client-id",
            "web",
            "--grant-type",
            "authorization_code",
            "--scope",
            "openid",
            "--redirect-uri",
            CALLBACK,
            "--skip-consent",
        )
        group.cli("user", "create", "--username", "erin", "--password-stdin", stdin="erin's pw 1\n")
        yield group


def sign_in(http: httpx.Client, node: str, password: str) -> int:
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": CALLBACK,
        "scope": "openid",
        "code_challenge": Pkce.new().challenge,
        "code_challenge_method": "S256",
    }
    page = http.get(f"{node}/authorize", params=params)
    assert page.status_code == 200, page.text[:300]
    form = {"interaction": hidden_interaction(page.text), "username": "erin", "password": password}
    return http.post(f"{node}/login", data=form).status_code


def test_two_nodes_share_one_allowance_and_a_restart_keeps_it(nodes: Cluster) -> None:
    a, b = nodes.nodes
    with httpx.Client(timeout=10) as http:
        statuses = [sign_in(http, (a, b)[i % 2], "wrong guess") for i in range(PAIR_LIMIT)]
        assert statuses == [401] * PAIR_LIMIT  # spread over both nodes
        assert sign_in(http, a, "wrong guess") == 429
        assert sign_in(http, b, "erin's pw 1") == 429  # even the right password, now

        nodes.restart(1)

        assert sign_in(http, b, "erin's pw 1") == 429  # the restarted node remembers
