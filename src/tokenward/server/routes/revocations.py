"""`GET /revocations`: the revocation log for resource servers (oauth/revocation_publisher.py).

Public, like /jwks: entries are digests, and a resource server follows them with no credentials
(docs/deployment.md, "Resource servers"). `TOKENWARD_REVOCATION_FEED=false` leaves it out.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive

from tokenward.core.revocation_wire import PATH
from tokenward.oauth.errors import InvalidRequest
from tokenward.oauth.revocation_publisher import parse_query
from tokenward.server.dependencies import Publisher
from tokenward.server.edge import JSONResponse

MAX_FIELDS = 8
router = APIRouter()


@router.get(PATH, summary="Revocation log for resource servers (tokenward)", tags=["discovery"])
async def revocations(request: Request, publisher: Publisher) -> Response:
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidRequest("too many query parameters") from None
    body = await publisher.answer(parse_query(pairs), lambda: _disconnected(request.receive))
    return JSONResponse(body, headers={"cache-control": "no-store"})


async def _disconnected(receive: Receive) -> None:
    """Returns once the caller has hung up (a GET has no body left to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
