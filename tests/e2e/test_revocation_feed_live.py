"""GET /revocations across processes: a follower of node A hears of revocations written at node
B (PostgreSQL + Redis), and a node that stops releases its long-polls at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.e2e.cluster import cluster
from tokenward.guard import InvalidToken, RemoteJwks, RemoteRevocations, Validator


def refused_within(validator: Validator, header: str, bound: float) -> float:
    started = time.monotonic()
    while True:
        try:
            validator.authenticate_sync(header)
        except InvalidToken:
            return time.monotonic() - started
        assert time.monotonic() - started < bound, "the follower still accepts a revoked token"
        time.sleep(0.005)


def test_a_revocation_at_node_b_reaches_a_follower_of_node_a(tmp_path: Path) -> None:
    with cluster(tmp_path) as group:
        a, b = group.nodes
        client = group.service_client()
        # Synchronous validation, as behind the Flask decorator: the follower runs in a thread.
        follower = RemoteRevocations(group.issuer, endpoint=f"{a}/revocations")
        validator = Validator(
            issuer=group.issuer,
            audience=group.issuer + "/api",
            keys=RemoteJwks(f"{a}/jwks"),
            revocations=follower,
        )
        try:

            def token() -> str:
                response = httpx.post(
                    f"{b}/token", data={"grant_type": "client_credentials"}, auth=client
                )
                return "Bearer " + str(response.json()["access_token"])

            first = token()
            assert validator.authenticate_sync(first).client_id == client[0]
            httpx.post(f"{b}/revoke", data={"token": first[7:]}, auth=client).raise_for_status()
            by_endpoint = refused_within(validator, first, bound=1.0)

            second = token()
            assert validator.authenticate_sync(second).client_id == client[0]
            group.cli("revoke", "--client", client[0])  # a watermark, written by the CLI
            by_cli = refused_within(validator, second, bound=1.0)
            print(f"node B → follower of node A: /revoke {by_endpoint:.3f} s, CLI {by_cli:.3f} s")
        finally:
            follower.close()


def test_a_stopping_node_answers_its_long_polls_at_once(tmp_path: Path) -> None:
    with cluster(tmp_path, nodes=1) as group:
        answers: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: answers.append(
                httpx.get(f"{group.nodes[0]}/revocations", params={"wait": 25}, timeout=30)
            )
        )
        poll.start()
        time.sleep(0.5)  # held by now
        assert not answers
        started = time.monotonic()
        group.processes[0].terminate()
        group.processes[0].wait(10)
        poll.join(10)
        assert time.monotonic() - started < 3
        assert answers[0].status_code == 200
        assert answers[0].json()["entries"] == []
