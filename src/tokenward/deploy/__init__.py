"""The composition root: the one place that reads settings, picks storage adapters, names the
deployment's Redis keys, builds every service and runs their background work. Nothing else in
tokenward imports it (import-linter contract in pyproject.toml)."""
