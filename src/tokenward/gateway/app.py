"""The gateway as one pure-ASGI app: route → IP rules → token → scopes → rate limit → upstream.

A plain ASGI callable rather than a Starlette app: the proxy needs no routing framework, and
every layer of one costs on each request (docs/gateway.md, "What bounds the figures"). The
config lives in one `Compiled` value that `reload` swaps whole: a request keeps the value it
started with, so a reload never changes the rules under a request in flight.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from starlette.types import Receive, Scope, Send

from tokenward.core.blocklist import IpBlocklist
from tokenward.core.claims import AccessToken
from tokenward.core.errors import BearerError, InsufficientUserAuthentication
from tokenward.core.events import ALLOW, DENY, IP_BLOCKED, UsageEvent, UsageSink
from tokenward.core.lifecycle import Background
from tokenward.core.ratelimits import RateDecision, RatePolicy
from tokenward.gateway.admission import admit, check_url
from tokenward.gateway.audit import MAX_AUDIT_PATH, AuditLog, AuditRecord
from tokenward.gateway.authorizers.base import RouteAuthorizer
from tokenward.gateway.authorizers.choose import route_authorizers
from tokenward.gateway.authorizers.dpop import DpopRefused
from tokenward.gateway.authz import (
    Decision,
    allowed,
    for_proxy,
    is_authz_request,
    original_request,
    resolved,
)
from tokenward.gateway.bff import LOGIN_RATE, Bff, parse_cookies
from tokenward.gateway.bff_stepup import StepUp, UpstreamChallenge, step_up_answer
from tokenward.gateway.compiled import Compiled, check_reloadable
from tokenward.gateway.contextual import Engines, judge, route_engines
from tokenward.gateway.headers import Incoming
from tokenward.gateway.idempotency import (
    UNSAFE,
    Idempotency,
    IdempotencyStore,
    MemoryIdempotencyStore,
)
from tokenward.gateway.metrics import GatewayMetrics
from tokenward.gateway.model import AuthzSettings, GatewayConfig, Route
from tokenward.gateway.policy import Denied, bearer_reason
from tokenward.gateway.proxy import ClientGone, Proxy
from tokenward.gateway.ratelimit import MemoryRateLimiter, RateLimiter, retry_after
from tokenward.gateway.render import (
    Answer,
    challenge_answer,
    forwarding,
    json_answer,
    lifespan,
    rate_key,
    send_answer,
    send_empty,
)
from tokenward.gateway.schema import RouteSchema, api_path, read_body, replay, reporting
from tokenward.gateway.traffic import TrafficManager, TrafficProxy
from tokenward.gateway.upstream import Pool, UpstreamError
from tokenward.gateway.websocket import (
    TokenWatch,
    Upgraded,
    as_http,
    check_websocket,
    open_upstream,
    send_upgrade_refusal,
    upstream_headers,
)
from tokenward.guard.authz.context import CountryLookup, MaxMindCountries, RiskProvider
from tokenward.guard.introspection_client import IntrospectionResolver
from tokenward.guard.validator import Validator
from tokenward.store.errors import STORAGE_ERRORS

log = structlog.get_logger(__name__)
Headers = list[tuple[bytes, bytes]]
# A load: the compiled config and each route's authorizer, swapped together by `reload` so a
# request never pairs one load's routes with another's authorizers.
Loaded = tuple[Compiled, dict[str, RouteAuthorizer], Engines]
CLIENT_CLOSED = 499  # the client left before an answer: logged, never sent
UPSTREAM_ERRORS = {502: "bad_gateway", 503: "temporarily_unavailable", 504: "gateway_timeout"}


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        validator: Validator | None,
        *,
        limiter: RateLimiter | None = None,
        metrics: GatewayMetrics | None = None,
        audit: AuditLog | None = None,
        pool: Pool | None = None,
        introspection: IntrospectionResolver | None = None,
        idempotency: IdempotencyStore | None = None,
        bff: Bff | None = None,
        background: Sequence[Background] = (),
        clock: Callable[[], float] = time.time,
        usage: UsageSink | None = None,
        blocklist: IpBlocklist | None = None,
        countries: CountryLookup | None = None,
        risk: RiskProvider | None = None,
    ) -> None:
        """`background`: started before the first request and stopped at shutdown, in order
        (the revocation feed of `revocations:`, the Redis clients of the shared backends).
        `usage`: the monitor's sink (tokenward.monitor): one non-blocking event per decision.
        `blocklist`: addresses the monitor or an admin blocked, refused with 403 ip_blocked.
        `countries`, `risk`: context for Cedar policies (docs/policies.md); without `countries`
        a config's `policies.geoip` database is opened here."""
        self.countries = countries
        self._opened: list[MaxMindCountries] = []  # closed at shutdown: ours, not the caller's
        if countries is None and config.geoip is not None:
            self._opened.append(MaxMindCountries(config.geoip))
            self.countries = self._opened[0]
        self.risk = risk
        self.usage = usage
        self.blocklist = blocklist
        # Kept for what builds and inspects the gateway; requests reach them through the
        # routes' authorizers (gateway/authorizers/), never by asking whether they are set.
        self.validator = validator
        self.introspection = introspection
        self.bff = bff
        self.clock = clock
        self.metrics = metrics or GatewayMetrics()
        dpop = validator.dpop if validator is not None else None
        self._dpop_algorithms = dpop.algorithms if dpop is not None else ()
        self.traffic = TrafficManager()  # routes with `traffic:`; configured by each load
        self.metrics.sources.append(self.traffic.collect)
        self._loaded = self._load(config)
        if bff is None and config.bff is not None:
            raise ValueError("a config with bff: needs a Bff (tokenward.gateway.bff)")
        self.limiter = limiter or MemoryRateLimiter()
        # The memory backend answers without I/O: call it without a coroutine on the hot path.
        self._limit_now = (
            self.limiter.acquire_sync if isinstance(self.limiter, MemoryRateLimiter) else None
        )
        self._fallback_limiter: MemoryRateLimiter | None = None  # best-effort limits, outage
        self.audit = audit
        self.proxy = Proxy(pool or Pool())
        self.traffic_proxy = TrafficProxy(self.proxy, self.traffic)
        self.idempotency = Idempotency(idempotency or MemoryIdempotencyStore(), clock)
        self.background = list(background)

    @property
    def compiled(self) -> Compiled:
        return self._loaded[0]

    @property
    def config(self) -> GatewayConfig:
        return self._loaded[0].config

    def reload(self, config: GatewayConfig) -> None:
        """Swap in a new config; raises ValueError (and keeps the old one) if it cannot apply."""
        check_reloadable(self.compiled.config, config, has_validator=self.validator is not None)
        self._loaded = self._load(config)

    def _load(self, config: GatewayConfig) -> Loaded:
        compiled = Compiled(config, self.bff.cookie_names if self.bff else (), self.clock)
        self.traffic.configure(config.routes)
        authorizers = route_authorizers(
            compiled,
            self.validator,
            metrics=self.metrics,
            introspection=self.introspection,
            bff=self.bff,
            clock=self.clock,
        )
        return compiled, authorizers, route_engines(config, self.countries, self.risk, self.clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket" and (await receive())["type"] == "websocket.connect":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        audit = self.audit
        audits = [audit] if audit is not None else []
        await lifespan(
            receive,
            send,
            on_start=[
                *(item.start for item in audits),
                *(item.start for item in self.background),
                self.traffic.start,
            ],
            on_stop=[
                self.traffic.stop,
                *(item.stop for item in reversed(self.background)),
                self.proxy.pool.close,
                *(item.close for item in self._opened),
                *(item.stop for item in audits),
            ],
        )

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        loaded = self._loaded
        compiled = loaded[0]
        record = AuditRecord(scope["method"])
        authz = compiled.config.authz
        try:
            if authz is not None and is_authz_request(scope, authz):
                status = await self._authz(loaded, authz, scope, send, record)
            else:
                status = await self._handle(loaded, scope, receive, send, record)
        except ClientGone:
            record.reason = "client_closed"
            status = CLIENT_CLOSED
        except Exception as exc:  # noqa: BLE001 - every failure is answered (refusal below)
            hsts = compiled.hsts(scope.get("scheme", "http"))  # for answers made here
            answer = self._refusal(exc, record, hsts)
            status = answer[0]
            with contextlib.suppress(Exception):  # the answer may have started already
                await send_answer(send, answer)
        elapsed = time.perf_counter() - started
        self.metrics.observe(
            record.route, record.method, status, record.admitted, record.reason, elapsed
        )
        now = self.clock()
        if self.audit is not None:
            self.audit.write(record, status, now, elapsed)
        if self.usage is not None:
            self._emit_usage(self.usage, record, status, now)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An upgrade, on a route with `websocket:` only: decided as the GET it is, then
        relayed to the upstream until either side closes or the token ends (websocket.py).
        Audited once, at the upgrade: 101 when it went through."""
        started = time.perf_counter()
        loaded = self._loaded
        compiled = loaded[0]
        record = AuditRecord("GET")
        relay: Upgraded | None = None
        try:
            http, path, readings = resolved(as_http(scope))
            _note_request(record, http, path)
            check_websocket(compiled, path, record)  # before any token work or rate count
            decision = await self._decide(loaded, http, path, readings, record)
            incoming = decision.incoming
            added = decision.added
            added.extend(forwarding(decision.scheme, incoming, decision.peer, compiled))
            route = decision.route
            upstream = await open_upstream(
                decision.scope,
                route,
                compiled.balancers[route.name].order(),
                upstream_headers(added, incoming.headers),
            )
            mirror = self.validator.revocations if self.validator is not None else None
            watch = TokenWatch(decision.token, mirror, self.clock)
            limit = route.websocket.max_message_bytes if route.websocket else 0
            accepted = Upgraded(receive, send, upstream, limit, watch, watch.next_look)
            try:
                await send(
                    {
                        "type": "websocket.accept",
                        "subprotocol": upstream.subprotocol,
                        "headers": decision.extra,
                    }
                )
            except BaseException:
                await upstream.close()  # the client left during the upstream's handshake
                raise
            relay = accepted
            status = 101
        except Exception as exc:  # noqa: BLE001 - every refusal is answered, as for HTTP
            answer = self._refusal(exc, record, compiled.hsts(as_http(scope)["scheme"]))
            status = answer[0]
            with contextlib.suppress(Exception):
                await send_upgrade_refusal(scope, send, answer)
        self.metrics.observe(
            record.route, "GET", status, record.admitted, record.reason,
            time.perf_counter() - started,
        )  # fmt: skip
        if self.audit is not None:
            self.audit.write(record, status, self.clock(), time.perf_counter() - started)
        if self.usage is not None:
            self._emit_usage(self.usage, record, status, self.clock())
        if relay is not None:
            await relay.run()
            # Why it ended (client, upstream, token_expired, token_revoked, ...): the audit
            # line was the upgrade's; this says how long the decision held.
            log.info("gateway_websocket_closed", route=record.route, closed_by=relay.closed_by)

    def _refusal(self, exc: Exception, record: AuditRecord, hsts: Headers) -> Answer:
        """The answer for a request that failed with `exc`; `record.reason` says why."""
        if isinstance(exc, Denied):
            record.reason = exc.reason
            body = {"error": exc.error, "error_description": exc.message, **exc.details}
            return json_answer(exc.status, body, exc.headers + hsts)
        if isinstance(exc, DpopRefused):
            record.reason = bearer_reason(exc.error)
            return challenge_answer(exc.error, hsts, exc.algorithms)
        if isinstance(exc, BearerError):
            record.reason = bearer_reason(exc)
            return challenge_answer(exc, hsts)
        if isinstance(exc, UpstreamError):
            record.reason = exc.reason
            self.metrics.upstream_error(record.route, exc.reason)
            body = {
                "error": UPSTREAM_ERRORS.get(exc.status, "bad_gateway"),
                "error_description": str(exc),
            }
            # 503: no upstream may take it now (traffic.py): a retry after a while may pass.
            retry = [(b"retry-after", b"1")] if exc.status == 503 else []
            return json_answer(exc.status, body, retry + hsts)
        if isinstance(exc, STORAGE_ERRORS):
            # Shared state (rate limits, idempotency records in Redis) is unreachable: fail
            # closed with a retryable answer rather than let a limit or a key go unenforced.
            log.warning("gateway_shared_state_unavailable", error=type(exc).__name__)
            record.reason = "shared_state_unavailable"
            body = {
                "error": "temporarily_unavailable",
                "error_description": "the gateway's shared state is unreachable; retry shortly",
            }
            return json_answer(503, body, [(b"retry-after", b"1"), *hsts])
        # A bug must still answer JSON and be counted. The type only: a traceback's locals
        # could hold the credential.
        log.error("gateway_unexpected_error", route=record.route, error=type(exc).__name__)
        record.reason = "internal_error"
        body = {"error": "server_error", "error_description": "the gateway failed"}
        return json_answer(500, body, hsts)

    def _emit_usage(self, usage: UsageSink, record: AuditRecord, status: int, now: float) -> None:
        """Identity only from verified claims (record.token is set after validation). The
        time is the audit line's, to the millisecond, so a replay of the audit log sees what
        the live monitor saw (docs/monitoring.md)."""
        token = record.token
        usage.emit(
            UsageEvent(
                time=math.floor(now * 1000) / 1000,
                jti=token.jti if token else None,
                sub=token.sub if token else None,
                client_id=token.client_id if token else None,
                route=record.route,
                ip=record.ip,
                user_agent=record.agent,
                status=status,
                decision=ALLOW if record.admitted else DENY,
                reason=record.reason,
                sid=token.sid if token else None,
                source="gateway",
                path=record.path,
            )
        )

    async def _handle(
        self, loaded: Loaded, scope: Scope, receive: Receive, send: Send, record: AuditRecord
    ) -> int:
        """Decide, then forward: the gateway as the proxy."""
        compiled = loaded[0]
        original = scope
        scope, path, readings = resolved(scope)
        _note_request(record, scope, path)
        bff = self.bff
        if bff is not None and path in bff.paths:
            return await self._bff_endpoint(bff, compiled, scope, send, record)
        try:
            decision = await self._decide(loaded, scope, path, readings, record)
        except InsufficientUserAuthentication as exc:
            if bff is None or not _is_bff_route(compiled, record.route):
                raise
            step_up = StepUp(exc.acr_values, exc.max_age)
            return await self._bff_step_up(bff, compiled, original, send, record, step_up)
        route, incoming, token = decision.route, decision.incoming, decision.token
        upstream_challenge = None
        if bff is not None and route.auth == "bff":
            # An API behind the gateway may ask for step-up too (RFC 9470 resource server):
            # the browser cannot answer that challenge, so the gateway does (bff_stepup.py).
            upstream_challenge = send = UpstreamChallenge(send)
        if route.schema is not None:
            receive, send = await self._schema(route, route.schema, decision, path, receive, send)
        scope, added, extra = decision.scope, decision.added, decision.extra
        added.extend(forwarding(decision.scheme, incoming, decision.peer, compiled))
        balancer = compiled.balancers[route.name]

        async def forward(receive: Receive, send: Send) -> int:
            if route.traffic is not None:
                return await self.traffic_proxy.forward(
                    scope, receive, send, route, incoming, added, extra, _subject(token)
                )
            return await self.proxy.forward(
                scope, receive, send, route, balancer, incoming, added, extra
            )

        ttl = route.idempotency_ttl
        if ttl is not None and token is not None and scope["method"] in UNSAFE:
            keys = [value for name, value in incoming.headers if name == b"idempotency-key"]
            if keys:
                status = await self._idempotent(
                    scope, receive, send, route, ttl, token, keys, extra, forward, record
                )
                return await self._after_upstream(
                    compiled, original, record, upstream_challenge, status
                )
        status = await forward(receive, send)
        return await self._after_upstream(compiled, original, record, upstream_challenge, status)

    async def _after_upstream(
        self,
        compiled: Compiled,
        scope: Scope,
        record: AuditRecord,
        upstream_challenge: UpstreamChallenge | None,
        status: int,
    ) -> int:
        """The upstream's answer went to the client, unless it was a step-up challenge on a
        bff route: then the browser is led to sign in again (held back by the wrapper)."""
        if upstream_challenge is None or upstream_challenge.step_up is None or self.bff is None:
            return status
        step_up = upstream_challenge.step_up
        return await self._bff_step_up(
            self.bff, compiled, scope, upstream_challenge.inner, record, step_up
        )

    async def _bff_step_up(
        self,
        bff: Bff,
        compiled: Compiled,
        scope: Scope,
        send: Send,
        record: AuditRecord,
        step_up: StepUp,
    ) -> int:
        cookies = parse_cookies(scope["headers"])
        hsts = compiled.hsts(compiled.scheme(scope, Incoming(), None))
        marker = cookies.get(bff.step_up_cookie)
        answer, reason = step_up_answer(scope, step_up, bff.settings.login_path, marker, hsts)
        record.reason = reason
        return await send_answer(send, answer)

    async def _schema(
        self,
        route: Route,
        schema: RouteSchema,
        decision: Decision,
        path: str,
        receive: Receive,
        send: Send,
    ) -> tuple[Receive, Send]:
        """The route's OpenAPI operation checked before the upstream (gateway/schema.py);
        a body is read whole, bounded, and replayed to the proxy."""
        scope, incoming = decision.scope, decision.incoming
        limits = schema.limits
        where = api_path(path, route.prefix, route.strip_prefix)
        operation, values = schema.operation(where, scope["method"])
        operation.check_parameters(values, scope.get("query_string", b""), incoming.headers)
        body = b""
        if incoming.has_body:
            body = await read_body(receive, incoming.content_length, limits.max_body_bytes)
            receive = replay(body, receive)
        content_type = next((v for n, v in incoming.headers if n == b"content-type"), None)
        operation.check_body(content_type, body, limits.max_depth)
        if limits.responses == "report":
            send = reporting(send, operation, route.name, limits.max_body_bytes)
        return receive, send

    async def _authz(
        self, loaded: Loaded, authz: AuthzSettings, scope: Scope, send: Send, record: AuditRecord
    ) -> int:
        """Decide only: a native proxy asks about the request it holds (docs/edge.md)."""
        compiled = loaded[0]
        try:
            original = original_request(authz, compiled, scope)
            record.method = original["method"]
            original, path, readings = resolved(original)
            _note_request(record, original, path)
            decision = await self._decide(loaded, original, path, readings, record)
        except ClientGone:
            raise
        except Exception as exc:  # noqa: BLE001 - every refusal goes back to the proxy
            answer = self._refusal(exc, record, [])
            return await send_answer(send, for_proxy(authz, answer))
        answer = allowed(authz, compiled, decision, self.clock())
        return await send_answer(send, answer)

    async def _decide(
        self,
        loaded: Loaded,
        scope: Scope,
        path: str,
        readings: tuple[str, ...],
        record: AuditRecord,
    ) -> Decision:
        """Route, address, token, binding, scopes, policies and rate limit for the resolved
        request: the one decision both the proxy and the external authorization API use.
        Raises the refusal (`Denied`, `BearerError`, `DpopRefused`, a storage error)."""
        compiled, authorizers, engines = loaded
        route, incoming, peer, scheme = admit(compiled, scope, path, readings, record)
        if self.blocklist is not None and self.blocklist.is_blocked(record.ip):
            raise Denied(403, IP_BLOCKED, "requests from this address are blocked for a while")
        authorizer = authorizers[route.name]
        scope, token, added = await authorizer.authorize(scope, incoming, scheme, record)
        if incoming.dpop and route.auth != "dpop":
            added.extend((b"dpop", value) for value in incoming.dpop)  # not ours to consume
        if token is not None and route.name in engines:
            self._judge(engines, route, token, scope["method"], path, record)
        extra = compiled.hsts(scheme)
        policy = route.rate_limit
        if policy is not None:
            extra = [*extra, *await self._rate_limit(compiled, route, policy, token, record.ip)]
        record.admitted = True
        return Decision(route, scope, token, added, extra, incoming, peer, scheme)

    def _judge(
        self,
        engines: Engines,
        route: Route,
        token: AccessToken,
        method: str,
        path: str,
        record: AuditRecord,
    ) -> None:
        """The route's Cedar policies; a step-up on a dpop route uses the DPoP scheme."""
        engine, policies = engines[route.name]
        try:
            judge(engine, policies, token, method, route.name, path, record)
        except BearerError as error:
            if route.auth != "dpop":
                raise
            raise DpopRefused(error, self._dpop_algorithms) from None  # RFC 9449 §7.1

    async def _idempotent(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        ttl: float,
        token: AccessToken,
        keys: list[bytes],
        extra: Headers,
        forward: Callable[[Receive, Send], Awaitable[int]],
        record: AuditRecord,
    ) -> int:
        if len(keys) > 1:
            raise Denied(400, "malformed", "more than one Idempotency-Key header")
        status, replayed = await self.idempotency.run(
            scope,
            receive,
            send,
            ttl,
            f"{route.name}\0{token.sub}",
            keys[0],
            extra,
            forward,
        )
        if replayed:
            record.reason = "idempotent_replay"
        return status

    async def _bff_endpoint(
        self, bff: Bff, compiled: Compiled, scope: Scope, send: Send, record: AuditRecord
    ) -> int:
        record.route = "bff"
        check_url(scope)
        client = scope.get("client")
        forwarded = compiled.headers.upstream_headers(scope["headers"]).forwarded_for
        record.ip = compiled.client_ip(client[0] if client else None, forwarded)
        if self.blocklist is not None and self.blocklist.is_blocked(record.ip):
            raise Denied(403, IP_BLOCKED, "requests from this address are blocked for a while")
        if scope["path"] == bff.settings.login_path:
            limit = await self.limiter.acquire(f"bff-login\0{record.ip}", LOGIN_RATE, self.clock())
            if not limit.allowed:
                raise Denied(
                    429,
                    "rate_limited",
                    "too many sign-ins started from this address; retry after the delay given",
                    [(b"retry-after", retry_after(limit))],
                )
        status, headers = await bff.endpoint(scope, parse_cookies(scope["headers"]))
        record.admitted = True
        hsts = compiled.hsts(compiled.scheme(scope, Incoming(), None))
        await send_empty(send, status, [*headers, *hsts])
        return status

    async def _rate_limit(
        self,
        compiled: Compiled,
        route: Route,
        policy: RatePolicy,
        token: AccessToken | None,
        ip: str,
    ) -> Headers:
        policy_value, state_prefix, key_prefix = compiled.rate[route.name]
        key = key_prefix + rate_key(policy.key, token, ip)
        now = self.clock()
        limit_now = self._limit_now
        if limit_now is not None:
            decision = limit_now(key, policy, now)
        else:
            try:
                decision = await self.limiter.acquire(key, policy, now)
            except STORAGE_ERRORS as exc:
                if not policy.best_effort:
                    raise  # an explicit limit fails closed: 503, never unlimited
                decision = self._degraded_limit(key, policy, now, exc)
            else:
                if self._fallback_limiter is not None:
                    log.info("rate_limit_shared_store_recovered")
                    self._fallback_limiter = None
        state = b"%b%d;t=%d" % (state_prefix, decision.remaining, math.ceil(decision.reset))
        headers = [(b"ratelimit-policy", policy_value), (b"ratelimit", state)]
        if not decision.allowed:
            headers.append((b"retry-after", retry_after(decision)))
            raise Denied(
                429, "rate_limited", "too many requests; retry after the delay given", headers
            )
        return headers

    def _degraded_limit(
        self, key: str, policy: RatePolicy, now: float, error: Exception
    ) -> RateDecision:
        """The implicit default limit while the shared store is down: counted per node."""
        if self._fallback_limiter is None:
            log.warning("rate_limit_shared_store_unavailable", error=type(error).__name__)
            self._fallback_limiter = MemoryRateLimiter()
        return self._fallback_limiter.acquire_sync(key, policy, now)


def create_gateway(
    config: GatewayConfig,
    validator: Validator | None,
    *,
    limiter: RateLimiter | None = None,
    metrics: GatewayMetrics | None = None,
    audit: AuditLog | None = None,
    introspection: IntrospectionResolver | None = None,
    bff: Bff | None = None,
    background: Sequence[Background] = (),
    clock: Callable[[], float] = time.time,
    usage: UsageSink | None = None,
    blocklist: IpBlocklist | None = None,
    countries: CountryLookup | None = None,
    risk: RiskProvider | None = None,
) -> Gateway:
    """The gateway ASGI app for a loaded config. `validator` must accept every route's audience
    (build it with those audiences, or any_audience=True: the gateway checks each route's)."""
    return Gateway(
        config,
        validator,
        limiter=limiter,
        metrics=metrics,
        audit=audit,
        introspection=introspection,
        bff=bff,
        background=background,
        clock=clock,
        usage=usage,
        blocklist=blocklist,
        countries=countries,
        risk=risk,
    )


def _note_request(record: AuditRecord, scope: Scope, path: str) -> None:
    """The audit line's path (no query) and user agent: what the risk monitor and a replay of
    the audit log see (docs/monitoring.md)."""
    record.path = path[:MAX_AUDIT_PATH]
    agent = next((v for k, v in scope.get("headers", ()) if k == b"user-agent"), b"")
    record.agent = agent[:256].decode("latin-1") or None


def _is_bff_route(compiled: Compiled, name: str | None) -> bool:
    return any(route.name == name and route.auth == "bff" for route in compiled.config.routes)


def _subject(token: AccessToken | None) -> str | None:
    return token.sub if token is not None else None
