"""Bearer-token protection for users' own APIs.

Only the framework-neutral ASGI middleware is exported here, so importing this package needs
neither FastAPI nor Flask. Framework users import `tokenward.resource.fastapi` (`require_scopes`,
`install_bearer_error_handler`, `current_token`) or `tokenward.resource.flask`
(`bearer_required`, with the `flask` extra) directly.
"""

from tokenward.resource.asgi import BearerAuthMiddleware

__all__ = ["BearerAuthMiddleware"]
