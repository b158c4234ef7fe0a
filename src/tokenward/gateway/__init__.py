"""The gateway: an edge that validates, limits and forwards requests to upstream services."""
