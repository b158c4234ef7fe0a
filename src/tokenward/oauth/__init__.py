"""The protocol core: typed requests in, typed responses or OAuthError out. No web framework."""
