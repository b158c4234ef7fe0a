"""The error the admin services raise for a request the operator must correct."""

from __future__ import annotations


class AdminError(ValueError):
    """A request the operator must correct; the message says how."""
