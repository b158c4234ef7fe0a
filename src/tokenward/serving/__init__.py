"""Serving HTTP/1.1 with bounded request heads and paced request bodies: one implementation for
the server and the gateway.

`limits.HeadLimits` says how much a client may send before its request is known (and how long a
request body may stall), and `protocol.server_options` turns it into uvicorn settings and a
protocol class. This package imports nothing else of tokenward, so it can move to the edge layer
as is.
"""
