"""One authorizer per `auth:` mode, chosen once per route when a config is loaded (choose.py).

Each holds exactly the collaborators its mode needs, so the request path never asks whether a
validator, a BFF or an introspection client is there: a route that needs one cannot be built
without it.
"""
