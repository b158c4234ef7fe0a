"""A monitored server with an admin user, and a console client signed in the way a browser is."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import FrozenClock
from tests.monitor.serving import ISSUER, PASSWORD, Monitored, monitored_server

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, html[:400]
    return match.group(1)


class Console:
    """Posts forms with the page's CSRF field and this origin, like the console's own pages."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""

    async def get(self, path: str) -> httpx.Response:
        response = await self.http.get(path)
        if response.status_code == 200 and 'name="csrf"' in response.text:
            self.csrf = csrf_of(response.text)
        return response

    async def post(self, path: str, origin: str = ISSUER, **fields: str) -> httpx.Response:
        data = {"csrf": self.csrf, **fields}
        response = await self.http.post(path, data=data, headers={"origin": origin})
        if response.status_code in (200, 400, 403) and 'name="csrf"' in response.text:
            self.csrf = csrf_of(response.text)
        return response

    async def sign_in(
        self, username: str = "root", password: str = PASSWORD, **more: str
    ) -> httpx.Response:
        await self.get("/admin/login")
        return await self.post("/admin/login", username=username, password=password, **more)


@pytest.fixture
async def server(clock: FrozenClock) -> AsyncIterator[Monitored]:
    async with monitored_server(clock) as monitored:
        yield monitored


@pytest.fixture
async def console(server: Monitored) -> Console:
    console = Console(server.at("192.0.2.200"))
    response = await console.sign_in()
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == "/admin/dashboard"
    await console.get("/admin/dashboard")
    return console
