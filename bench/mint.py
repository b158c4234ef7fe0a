"""Single-use credentials for the refresh and code figures, written where a running
`tokenward serve` reads them: `python -m bench.mint refresh|code COUNT FILE` with the server's
TOKENWARD_* environment. What an authorization (sign-in, consent, redirect) would have stored,
stored directly, so the figure times only the token endpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sys
import time
from pathlib import Path

from bench.contenders import CODE_VERIFIER, REDIRECT_URI, RESOURCE
from tokenward.core.records import CodeRecord, FamilyRecord, RefreshRecord
from tokenward.deploy import startup
from tokenward.oauth.pkce import s256
from tokenward.oauth.refresh import PREFIX, refresh_digest


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def mint(kind: str, count: int) -> list[str]:
    services = await startup.open_services(startup.settings())
    stores = services.stores
    try:
        user = await stores.users.by_username("bench")
        if user is None:
            raise SystemExit("no user `bench`: the contender creates it")
        now = time.time()
        values = []
        for _ in range(count):
            if kind == "refresh":
                value = PREFIX + secrets.token_urlsafe(32)
                family = FamilyRecord(
                    family_id=secrets.token_urlsafe(16),
                    client_id="bench",
                    user_id=user.user_id,
                    scopes=frozenset({"openid", "offline_access", "read"}),
                    audience=(RESOURCE,),
                    created_at=now,
                    expires_at=now + 86400,
                    session_id="bench-session",
                    auth_time=now,
                )
                first = RefreshRecord(refresh_digest(value), family.family_id, now, now + 86400)
                await stores.grants.create(family, first)
            else:
                value = secrets.token_urlsafe(32)
                await stores.codes.save(
                    CodeRecord(
                        digest=_digest(value),
                        client_id="bench",
                        redirect_uri=REDIRECT_URI,
                        code_challenge=s256(CODE_VERIFIER),
                        scopes=frozenset({"openid", "offline_access", "read"}),
                        audience=(RESOURCE,),
                        user_id=user.user_id,
                        session_id="bench-session",
                        auth_time=now,
                        expires_at=now + 300,
                    )
                )
            values.append(value)
    finally:
        await stores.aclose()
    return values


if __name__ == "__main__":
    minted = asyncio.run(mint(sys.argv[1], int(sys.argv[2])))
    Path(sys.argv[3]).write_text("\n".join(minted) + "\n")
