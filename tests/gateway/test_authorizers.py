"""Each route gets the authorizer of its `auth:` mode when a config is loaded, and a route whose
mode lacks a collaborator (validator, DPoP verifier) is refused then, not on its first request."""

from __future__ import annotations

import pytest

from tests.conftest import AUDIENCE, ISSUER
from tokenward.gateway.app import Gateway
from tokenward.gateway.authorizers.bearer import Bearer
from tokenward.gateway.authorizers.dpop import Dpop
from tokenward.gateway.authorizers.passthrough import PassThrough
from tokenward.gateway.authorizers.signed import SignedLinks
from tokenward.gateway.authorizers.tokens import IntrospectedTokens, Tokens
from tokenward.gateway.config import parse_config
from tokenward.gateway.model import DpopSettings
from tokenward.gateway.trust import dpop_verifier
from tokenward.guard import Validator
from tokenward.guard.introspection_client import IntrospectionResolver
from tokenward.store.memory import MemoryReplayCache

CONFIG = f"""
trust: {{issuer: {ISSUER}, audience: {AUDIENCE}}}
routes:
  - {{name: items, prefix: /items, upstreams: ["http://127.0.0.1:9"], auth: bearer}}
  - {{name: open, prefix: /open, upstreams: ["http://127.0.0.1:9"], auth: none}}
  - name: links
    prefix: /links
    upstreams: ["http://127.0.0.1:9"]
    auth: signed_url
    signed_url: {{keys: [{{kid: k, secret: {"s" * 40}}}]}}
"""
DPOP_ROUTE = '  - {name: bound, prefix: /bound, upstreams: ["http://127.0.0.1:9"], auth: dpop}\n'


def test_each_route_gets_its_modes_authorizer(validator: Validator) -> None:
    gateway = Gateway(parse_config(CONFIG), validator)
    chosen = gateway._loaded[1]
    assert type(chosen["items"]) is Bearer
    assert type(chosen["open"]) is PassThrough
    assert type(chosen["links"]) is SignedLinks
    assert type(chosen["items"]._tokens) is Tokens


def test_an_introspection_client_bounds_cached_opaque_tokens(validator: Validator) -> None:
    resolver = IntrospectionResolver("http://127.0.0.1:9/introspect", "gateway", "secret")
    gateway = Gateway(parse_config(CONFIG), validator, introspection=resolver)
    bearer = gateway._loaded[1]["items"]
    assert isinstance(bearer, Bearer)
    assert type(bearer._tokens) is IntrospectedTokens


def test_dpop_routes_get_the_verifiers_algorithms(validator: Validator) -> None:
    verifier = dpop_verifier(DpopSettings(), MemoryReplayCache().first_use)
    with_dpop = Validator(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=validator.keys,
        revocations=validator.revocations,
        dpop=verifier,
    )
    gateway = Gateway(parse_config(CONFIG + DPOP_ROUTE), with_dpop)
    bound = gateway._loaded[1]["bound"]
    assert isinstance(bound, Dpop)
    assert bound._algorithms == verifier.algorithms


def test_token_routes_without_a_validator_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="need a validator"):
        Gateway(parse_config(CONFIG), None)


def test_a_dpop_route_without_a_verifier_is_refused_and_a_reload_keeps_the_old_load(
    validator: Validator,
) -> None:
    with pytest.raises(ValueError, match="DPoP verifier"):
        Gateway(parse_config(CONFIG + DPOP_ROUTE), validator)
    gateway = Gateway(parse_config(CONFIG), validator)
    before = gateway._loaded
    with pytest.raises(ValueError, match="DPoP verifier"):
        gateway.reload(parse_config(CONFIG + DPOP_ROUTE))
    assert gateway._loaded is before
