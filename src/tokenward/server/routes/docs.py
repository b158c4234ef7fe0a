"""/docs: Swagger UI served from this server, so the API docs work offline and load nothing from a
CDN. The assets come from the swagger-ui-bundle-v2 package (not vendored here); the page's CSP
allows this origin's scripts only, which is why the initializer is a file and not inline."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_OWN = Path(__file__).resolve().parents[1] / "static" / "docs"
ASSETS = {  # name -> file; nothing else is served from the package folder
    "swagger-ui.css": Path(swagger_ui_path) / "swagger-ui.css",
    "swagger-ui-bundle.js": Path(swagger_ui_path) / "swagger-ui-bundle.js",
    "favicon-32x32.png": Path(swagger_ui_path) / "favicon-32x32.png",
    "init.js": _OWN / "init.js",
}
_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
"""
router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def docs(request: Request) -> Response:
    app = request.app  # the page names the app's own title and OpenAPI document
    page = PAGE.format(
        title=escape(app.title), openapi_url=escape(app.openapi_url or "/openapi.json")
    )
    return HTMLResponse(
        page,
        headers={
            "content-security-policy": DOCS_CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )


@router.get("/docs/assets/{name}")
async def asset(name: str) -> Response:
    path = ASSETS.get(name)
    if path is None:
        return Response(status_code=404)
    return FileResponse(
        path,
        media_type=_TYPES[path.suffix],
        headers={"cache-control": "max-age=86400", "x-content-type-options": "nosniff"},
    )
