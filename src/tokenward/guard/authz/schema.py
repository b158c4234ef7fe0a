"""The one Cedar schema every policy is validated against at load (docs/policies.md lists it).

Principals are `Subject`s (a token's subject with its verified claims: any other string-valued
claim is a tag), resources are `Route`s (path parameters from the route's templates are tags),
actions are the HTTP methods in two groups, `read` and `write`.
"""

from __future__ import annotations

READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
METHODS = frozenset(READ_METHODS + WRITE_METHODS)

SCHEMA = """
type RequestContext = {
  ip: ipaddr,
  country: String,
  hour: Long,
  weekday: Long,
  acr: String,
  amr: Set<String>,
  auth_age: Long,
  sender: String,
  scopes: Set<String>,
  risk: Long,
};
entity Subject = {
  sub: String,
  client_id: String,
  roles: Set<String>,
  groups: Set<String>,
  tenant: String,
} tags String;
entity Route = {
  name: String,
  path: String,
  template: String,
} tags String;
action read, write;
action "GET", "HEAD", "OPTIONS" in [read]
  appliesTo { principal: [Subject], resource: [Route], context: RequestContext };
action "POST", "PUT", "PATCH", "DELETE" in [write]
  appliesTo { principal: [Subject], resource: [Route], context: RequestContext };
"""
