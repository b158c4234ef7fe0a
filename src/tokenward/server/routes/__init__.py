"""Route groups of the authorization server."""
