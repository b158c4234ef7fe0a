"""A typed reader over PyYAML's node tree, so every config error names its file, line and field.

`yaml.safe_load` throws positions away and silently keeps the last of two duplicate keys; reading
the composed nodes keeps `start_mark` for each value and lets us refuse duplicates and unknown
keys (a typo like `scope:` for `scopes:` must not silently open a route).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import yaml


class ConfigError(ValueError):
    """A config the gateway refuses, with where and why: `gateway.yaml:12: routes[0].auth: ...`."""

    def __init__(self, source: str, line: int | None, field: str, message: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        self.source = source
        self.line = line
        self.field = field
        self.message = message


class Node:
    """One YAML value with its dotted path (`routes[2].upstreams`) and 1-based line."""

    __slots__ = ("_node", "path", "source")

    def __init__(self, node: yaml.Node, path: str, source: str) -> None:
        self._node = node
        self.path = path
        self.source = source

    @property
    def line(self) -> int:
        return self._node.start_mark.line + 1

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.line, self.path, message)

    def _child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    # --- mappings ------------------------------------------------------------------------
    def mapping(self, allowed: frozenset[str]) -> dict[str, Node]:
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error("must be a mapping")
        items: dict[str, Node] = {}
        for key_node, value_node in self._node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise ConfigError(self.source, key_node.start_mark.line + 1, self.path, "bad key")
            path = self._child_path(key)
            line = key_node.start_mark.line + 1
            if key in items:
                raise ConfigError(self.source, line, path, "appears twice")
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise ConfigError(self.source, line, path, f"unknown field (known: {known})")
            items[key] = Node(value_node, path, self.source)
        return items

    def items(self) -> Iterator[tuple[Node, Node]]:
        """Key and value nodes of a mapping whose keys are data (header names, policy names)."""
        if not isinstance(self._node, yaml.MappingNode):
            raise self.error("must be a mapping")
        seen: set[str] = set()
        for key_node, value_node in self._node.value:
            key = Node(key_node, self.path, self.source).string()
            if key in seen:
                raise Node(key_node, self._child_path(key), self.source).error("appears twice")
            seen.add(key)
            yield (
                Node(key_node, self._child_path(key), self.source),
                Node(value_node, self._child_path(key), self.source),
            )

    # --- sequences -----------------------------------------------------------------------
    def sequence(self) -> list[Node]:
        if not isinstance(self._node, yaml.SequenceNode):
            raise self.error("must be a list")
        return [
            Node(item, f"{self.path}[{index}]", self.source)
            for index, item in enumerate(self._node.value)
        ]

    def listed(self) -> list[Node]:
        """A list; a single value is accepted as a list of one."""
        return self.sequence() if self.is_sequence else [self]

    def strings(self) -> list[str]:
        return [item.string() for item in self.listed()]

    # --- scalars -------------------------------------------------------------------------
    def _scalar(self) -> yaml.ScalarNode:
        if not isinstance(self._node, yaml.ScalarNode):
            raise self.error("must be a single value")
        return self._node

    @property
    def is_mapping(self) -> bool:
        return isinstance(self._node, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self._node, yaml.SequenceNode)

    def is_null(self) -> bool:
        node = self._node
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def is_false(self) -> bool:
        """`false`, `no` or `off` (YAML 1.1 booleans, as PyYAML's safe loader reads them)."""
        node = self._node
        return (
            isinstance(node, yaml.ScalarNode)
            and node.tag == "tag:yaml.org,2002:bool"
            and str(node.value).lower() in ("false", "no", "off")
        )

    def string(self) -> str:
        node = self._scalar()
        if node.tag != "tag:yaml.org,2002:str" or not node.value:
            raise self.error("must be a non-empty string")
        return str(node.value)

    def boolean(self) -> bool:
        node = self._scalar()
        if node.tag != "tag:yaml.org,2002:bool":
            raise self.error("must be true or false")
        return str(node.value).lower() in ("true", "yes", "on")

    def number(self, *, minimum: float = 0.0, integer: bool = False) -> float:
        node = self._scalar()
        kinds = (
            {"tag:yaml.org,2002:int"}
            if integer
            else {
                "tag:yaml.org,2002:int",
                "tag:yaml.org,2002:float",
            }
        )
        if node.tag not in kinds:
            raise self.error("must be an integer" if integer else "must be a number")
        try:
            value = float(str(node.value).replace("_", ""))
        except ValueError:
            raise self.error("must be a number") from None
        if not math.isfinite(value) or value < minimum:
            raise self.error(f"must be a finite number of at least {minimum:g}")
        return value

    def integer(self, *, minimum: int = 0) -> int:
        return int(self.number(minimum=minimum, integer=True))

    def choice(self, choices: tuple[str, ...]) -> str:
        value = self.string()
        if value not in choices:
            raise self.error(f"must be one of {', '.join(choices)} (got {value!r})")
        return value


def parse_document(text: str, source: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, line, "", f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, "", f"not valid YAML: {exc}") from None
    if root is None:
        raise ConfigError(source, None, "", "the file is empty")
    return Node(root, "", source)
