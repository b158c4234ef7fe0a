"""SETs follow `tokenward keys migrate`: a real server process (PostgreSQL, Redis) pushes SETs
to a receiver on loopback; the deployment migrates ES256 -> PS256 and the ES256 keyring retires;
SETs are still delivered, signed with the new active key, and verify with jwcrypto against the
server's /jwks (docs/continuous-access.md, docs/post-quantum.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from jwcrypto import jwk, jwt

from tests.e2e.cluster import cluster
from tests.e2e.live import free_port, serve_in_thread
from tests.e2e.test_ssf_live import PUSH, VERIFICATION, Received, claims_of, relying_party
from tokenward.tokens.jws import parse_compact


def _verification_set(http: httpx.Client, received: Received, stream_id: str, state: str) -> str:
    answer = http.post("/ssf/verify", json={"stream_id": stream_id, "state": state})
    assert answer.status_code == 204, answer.text
    _headers, body = received.wait_for(
        "/events",
        lambda _h, b: claims_of(b.decode())["events"].get(VERIFICATION) == {"state": state},
    )
    return body.decode()


def _verified(token: str, base: str, alg: str) -> dict[str, Any]:
    keys = jwk.JWKSet.from_json(httpx.get(f"{base}/jwks").text)
    checked = jwt.JWT(jwt=token, key=keys, algs=[alg])
    assert checked.token.jose_header["typ"] == "secevent+jwt"
    claims: dict[str, Any] = json.loads(checked.claims)
    return claims


def _key_states(cli_output: str) -> set[tuple[str, str]]:
    return {(key["alg"], key["state"]) for key in json.loads(cli_output)}


def test_sets_are_signed_with_the_migrated_algorithm_after_the_old_keys_retire(
    tmp_path: Path,
) -> None:
    rp_port = free_port()
    received = Received()
    unused = jwk.JWK.generate(kty="EC", crv="P-256", kid="unused")
    with (
        serve_in_thread(relying_party(received, unused), rp_port) as rp,
        cluster(
            tmp_path,
            nodes=1,
            key_schedule_seconds="0.5",
            outbound_allow_loopback="true",  # the receiver is on loopback
        ) as group,
    ):
        base = group.nodes[0]
        client = group.service_client("receiver", "ssf.manage")

        def manage() -> httpx.Client:
            token = httpx.post(
                f"{base}/token",
                auth=client,
                data={"grant_type": "client_credentials", "scope": "ssf.manage"},
            ).json()["access_token"]
            return httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"})

        with manage() as http:
            stream = http.post(
                "/ssf/streams",
                json={"delivery": {"method": PUSH, "endpoint_url": f"{rp}/events"}},
            )
            assert stream.status_code == 201, stream.text
            stream_id = stream.json()["stream_id"]
            before = _verification_set(http, received, stream_id, "before")
            assert parse_compact(before).header["alg"] == "ES256"

        plan = json.loads(group.cli("keys", "migrate", "--to", "PS256", "--force"))
        assert plan["previous"] == "ES256"
        # The server's schedule picks the switch up and retires the ES256 keyring.
        deadline = time.monotonic() + 30
        while ("ES256", "retiring") not in _key_states(group.cli("keys", "list")):
            assert time.monotonic() < deadline, "the ES256 keyring never retired"
            time.sleep(0.2)
        assert ("ES256", "active") not in _key_states(group.cli("keys", "list"))

        with manage() as http:  # a token signed PS256 now, like the SETs below
            assert parse_compact(http.headers["authorization"][7:]).header["alg"] == "PS256"
            after = _verification_set(http, received, stream_id, "after")

        header = parse_compact(after).header
        assert (header["alg"], header["kid"]) == ("PS256", plan["kid"])
        claims = _verified(after, base, "PS256")
        assert claims["iss"] == group.issuer
        assert claims["aud"] == "receiver"
        assert claims["events"][VERIFICATION] == {"state": "after"}
