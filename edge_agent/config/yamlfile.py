"""Reading a configuration file's YAML, stricter than YAML itself, so that what a file says
is what it reads as and a hostile file costs little:

* a key twice in one mapping is an error (YAML's last-one-wins would let
  ``allow_insecure: false`` followed by ``allow_insecure: true`` read as safe);
* a document that, with its aliases (``*name``) expanded, holds more than MAX_NODES values is
  refused: anchors may share a filter chain between sensors, but a few hundred bytes of nested
  aliases expand to gigabytes for whoever walks them (the check, an error message);
* nesting deeper than MAX_DEPTH and files over MAX_BYTES are refused before they cost time or
  memory (PyYAML's composer recurses once per level).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_DEPTH = 32  # levels of nesting: a node configuration uses six
MAX_BYTES = 1 << 20  # a configuration file of 1 MiB is already a hundred times a large one
MAX_NODES = 20_000  # values with aliases expanded: six sensors with every option hold about 2,000


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without duplicate keys, aliases or deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):  # the node named: it must be complete
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise ComposerError(None, None, "an alias inside the node it names", mark)
            return node
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        size = 1 + sum(self._sizes[id(c)] for c in children)  # aliases counted each time
        if size > MAX_NODES:
            raise ComposerError(
                None, None, f"more than {MAX_NODES} values once its aliases are expanded", mark
            )
        self._sizes[id(node)] = size
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # a list or mapping as a key
                raise ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
                ) from None
            if first is not None:
                raise ConstructorError(
                    None, None, f"the key {key!r} again (first on line {first})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """The document in ``text``; yaml.YAMLError (with a mark) for anything refused above."""
    if len(text) > MAX_BYTES:
        raise yaml.YAMLError(f"more than {MAX_BYTES >> 20} MiB: not a node configuration")
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
