"""Continuous access evaluation across two server processes sharing PostgreSQL and Redis: a
stream made at one node is served by the other, and a revocation made at either is signalled
exactly once for the deployment (both nodes follow the log; one claims each entry)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from jwcrypto import jwk, jwt

from tests.e2e.cluster import Cluster, cluster

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("cluster")) as group:
        yield group


def token(base: str, client: tuple[str, str], scope: str) -> str:
    answer = httpx.post(
        f"{base}/token", data={"grant_type": "client_credentials", "scope": scope}, auth=client
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


def test_a_revocation_at_one_node_is_signalled_once_at_the_other(nodes: Cluster) -> None:
    a, b = nodes.nodes
    receiver = nodes.service_client("ssf-rx", "ssf.manage")
    ops = nodes.service_client("ops", "tokenward:admin")
    user = json.loads(
        nodes.cli("user", "create", "--username", "dana", stdin="a long enough password\n")
    )["user_id"]
    manage = {"authorization": f"Bearer {token(a, receiver, 'ssf.manage')}"}
    with (
        httpx.Client(headers=manage, timeout=30) as at_a,
        httpx.Client(headers=manage, timeout=30) as at_b,
    ):
        stream = at_a.post(
            f"{a}/ssf/streams",
            json={
                "delivery": {"method": "urn:ietf:rfc:8936"},
                "events_requested": [CAEP + "session-revoked"],
            },
        ).json()
        subject = {"format": "iss_sub", "iss": nodes.issuer, "sub": user}
        added = at_b.post(
            f"{b}/ssf/subjects:add", json={"stream_id": stream["stream_id"], "subject": subject}
        )
        assert added.status_code == 200, added.text  # node B sees the stream node A made
        poll = f"/ssf/poll/{stream['stream_id']}"

        forced = httpx.post(
            f"{b}/admin/api/users/{user}/logout",
            headers={"authorization": f"Bearer {token(b, ops, 'tokenward:admin')}"},
        )
        assert forced.status_code == 200, forced.text
        first = at_a.post(a + poll, json={"returnImmediately": False}).json()
        time.sleep(3)  # past the 2 s re-read: both nodes have followed the entry by now
        again = at_a.post(
            a + poll, json={"returnImmediately": True, "ack": list(first["sets"])}
        ).json()

    [set_token] = first["sets"].values()
    keys = jwk.JWKSet.from_json(httpx.get(f"{a}/jwks").text)
    claims = json.loads(jwt.JWT(jwt=set_token, key=keys, algs=["ES256"]).claims)
    assert claims["sub_id"] == subject
    assert CAEP + "session-revoked" in claims["events"]
    assert again == {"sets": {}, "moreAvailable": False}
