"""YAML metadata read as the text the user wrote (``1.10`` stays ``1.10``, ``true`` stays ``true``).

Its own module so that PyYAML is imported only when metadata is YAML rather than JSON.
"""

from __future__ import annotations

from collections.abc import Hashable

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from atlas_ci.errors import ConfigError
from atlas_ci.textfile import quoted

_TAG = "tag:yaml.org,2002:"


class _TextLoader(yaml.SafeLoader):
    """A SafeLoader that builds every scalar as the text the user wrote (null stays None)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, object]:
        # PyYAML keeps the last of duplicate keys silently; a duplicate is almost always
        # a copy-paste mistake, so refuse it (keys brought in by a "<<" merge may be overridden).
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == _TAG + "merge" or not isinstance(key_node, ScalarNode):
                    continue
                if key_node.value in seen:
                    raise ConstructorError(
                        None, None, f"duplicate key {quoted(key_node.value)}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _construct_text(loader: yaml.SafeLoader, node: Node) -> str:
    assert isinstance(node, ScalarNode)
    return str(loader.construct_scalar(node))


def _construct_null(loader: yaml.SafeLoader, node: Node) -> None:
    return None


for _tag in ("bool", "int", "float", "binary", "timestamp", "str", "merge", "value"):
    _TextLoader.add_constructor(_TAG + _tag, _construct_text)
_TextLoader.add_constructor(_TAG + "null", _construct_null)


def load(text: str, source: str) -> object:
    """Parse ``text`` (untrusted: narrow it before use); every error a ``ConfigError`` naming
    ``source``."""
    loader: _TextLoader | None = None
    try:
        loader = _TextLoader(text)  # its reader already refuses control characters
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        hint = (
            "give each key once"
            if problem.startswith("duplicate key")
            else "write one KEY: VALUE per line, quoting values with ': ' or '#'"
        )
        raise ConfigError(
            f"metadata in {source} is not valid YAML{where}: {problem}", hint
        ) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"metadata in {source} contains the control character U+{exc.character:04X} "
            f"at offset {exc.position}",
            "remove it, or write it as an escape in a double-quoted string",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"metadata in {source} is not valid YAML: {exc}",
            "write one KEY: VALUE per line",
        ) from None
    except RecursionError:
        raise ConfigError(
            f"metadata in {source} is nested too deeply", "write a flat mapping"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
