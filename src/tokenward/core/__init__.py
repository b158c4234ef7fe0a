"""The bottom layer: plain values, errors and ports (Protocols) that every other layer shares.

Imports nothing else of tokenward (pinned by the import-linter contracts in pyproject.toml), and
third-party packages only where a value type needs one. Adapters that implement these ports live
in `tokenward.store`; the logic that uses them in `tokens`, `guard`, `monitor` and `oauth`.
"""
