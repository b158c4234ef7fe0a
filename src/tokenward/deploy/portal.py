"""The developer portal's catalogue, read from the gateway configuration files that
TOKENWARD_PORTAL_GATEWAY_CONFIGS names, with the gateway's own loader: the same routes, scopes,
audiences and OpenAPI documents the gateway enforces. Here, in the composition root, because
the server does not import the gateway; the server gets plain values (services/catalogue.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenward.gateway.config import ConfigError, load_config
from tokenward.services.catalogue import Catalogue, CatalogueApi, catalogue_api


class PortalConfigError(ValueError):
    """A gateway configuration the portal names cannot be read; the message says which."""


def load_catalogue(paths: Sequence[Path]) -> Catalogue:
    """Every route of every file, in order; a route name seen twice keeps its first."""
    apis: dict[str, CatalogueApi] = {}
    for path in paths:
        try:
            config = load_config(path)
        except (ConfigError, OSError) as exc:
            raise PortalConfigError(f"TOKENWARD_PORTAL_GATEWAY_CONFIGS: {path}: {exc}") from None
        for route in config.routes:
            if route.name in apis:
                continue
            apis[route.name] = catalogue_api(
                name=route.name,
                prefix=route.prefix,
                methods=route.methods,
                scopes=route.scopes,
                audience=route.audience or _only(config.trust.audiences),
                auth=route.auth,
                strip_prefix=route.strip_prefix,
                document=route.schema.document if route.schema is not None else None,
            )
    return Catalogue(tuple(apis.values()))


def _only(audiences: tuple[str, ...]) -> str | None:
    """A route without `audience:` takes the gateway's; shown when it is a single one."""
    return audiences[0] if len(audiences) == 1 else None
