"""Path templates such as `/tenants/{tenant}/orders/{id}`: which one a path is, and its values.

A `{name}` matches one non-empty path segment; the values become the resource's tags, so a
policy reads `resource.getTag("tenant")`. Templates are tried in the order given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
MAX_VALUE = 256  # longer segments are not taken as values (the template does not match)


class TemplateError(ValueError):
    pass


class PathTemplates:
    def __init__(self, templates: Sequence[str]) -> None:
        self._compiled: list[tuple[str, re.Pattern[str]]] = []
        for template in templates:
            self._compiled.append((template, _compile(template)))

    def match(self, path: str) -> tuple[str, dict[str, str]]:
        """(the matching template, its values), or ("", {}) when none matches."""
        for template, pattern in self._compiled:
            found = pattern.fullmatch(path)
            if found is not None:
                return template, found.groupdict()
        return "", {}


def _compile(template: str) -> re.Pattern[str]:
    if not template.startswith("/"):
        raise TemplateError(f"path template {template!r} must start with /")
    names: list[str] = []
    pattern = ""
    position = 0
    for found in _PLACEHOLDER.finditer(template):
        literal = template[position : found.start()]
        if "{" in literal or "}" in literal:
            raise TemplateError(f"path template {template!r}: use {{name}} placeholders")
        pattern += re.escape(literal) + f"(?P<{found.group(1)}>[^/]{{1,{MAX_VALUE}}})"
        if found.group(1) in names:
            raise TemplateError(f"path template {template!r} names {found.group(1)} twice")
        names.append(found.group(1))
        position = found.end()
    rest = template[position:]
    if "{" in rest or "}" in rest:
        raise TemplateError(f"path template {template!r}: use {{name}} placeholders")
    return re.compile(pattern + re.escape(rest))
