"""One handler per grant type, each behind the `GrantHandler` interface."""
