"""tokenward: issue, validate, refresh, revoke and watch bearer tokens."""

__version__ = "0.1.0"
