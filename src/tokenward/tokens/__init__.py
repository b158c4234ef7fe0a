"""Keys, JOSE primitives and token strategies. Imports no web framework and no storage driver."""
