"""Make attacker-shaped values safe to print, and find text no Google service can have written.

Values in a finding come partly from the compromised container (process arguments, file paths); an attacker can put
terminal escapes, fake log lines or megabytes in them. Everything that reaches a log line, a report or a terminal
passes through :func:`clean`.

A lone surrogate (``"\\ud800"`` in JSON) is not Unicode text: it cannot be encoded as UTF-8, so the first attempt to
log or serialise it raises. SCC, Pub/Sub and Eventarc write protobuf strings, which are UTF-8 by definition, so their
JSON never holds one; a delivery that does was written by someone else and is refused whole (:func:`untrusted_text`),
never repaired into a different but valid name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_TEXT = 512
MAX_DEPTH = 64  # the deepest real notification field is ~8 levels down; Python's own parser allows ~1000
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"
_LONE_SURROGATE = "holds a lone surrogate: not Unicode text, and no SCC or Pub/Sub message carries one"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # the JSON escape of a surrogate (hex in either case)
# C0 and C1 controls (ESC, CR, CSI...), line and paragraph separators, bidi overrides, and surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(value: object, limit: int = MAX_TEXT) -> str:
    """Return ``value`` as one line of text with control, bidi and surrogate characters replaced and the length
    bounded; the result can always be printed and encoded as UTF-8."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(REPLACEMENT, text)
    if len(text) > limit:
        return f"{text[:limit]}…[{len(text) - limit} more chars]"
    return text


def clean_tree(value: Any, limit: int = MAX_TEXT, depth: int = 6) -> Any:
    """Apply :func:`clean` to every string in a JSON-like tree, bounding depth and list length too."""
    if depth <= 0:
        return clean(repr(value), limit)
    if isinstance(value, str):
        return clean(value, limit)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {clean(k, 128): clean_tree(v, limit, depth - 1) for k, v in list(value.items())[:100]}
    if isinstance(value, Sequence):
        return [clean_tree(v, limit, depth - 1) for v in list(value)[:100]]
    return clean(value, limit)


def surrogate_free(text: str | bytes) -> bool:
    """True when JSON ``text`` cannot decode to a string holding a surrogate: ASCII with no ``\\uD800``-``\\uDFFF``
    escape. A surrogate in decoded JSON comes from such an escape or from the raw text itself (non-ASCII: not
    cleared here). One scan of the text in C, instead of a search per decoded string; a false alarm (an escaped
    backslash before ``uD8..``) only means the strings are searched one by one."""
    if not text.isascii():
        return False
    return _ESCAPED_SURROGATE.search(text if isinstance(text, str) else text.decode("ascii")) is None


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (decoded JSON pairs them, so any surrogate left is lone)."""
    return _SURROGATE.search(text) is not None


def untrusted_text(value: Any, where: str = "", max_depth: int = MAX_DEPTH, *, strings: bool = True) -> str | None:
    """Why a decoded JSON tree cannot have come from SCC or Pub/Sub, or None.

    Refuses a lone surrogate in any key or string (naming where it sits) and nesting deeper than ``max_depth``.
    Iterative, so a tree nested as deeply as the JSON parser allows cannot exhaust the stack here. ``strings=False``:
    the caller knows the source text could not decode to a surrogate (:func:`surrogate_free`); depth only.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if strings and has_surrogate(node):
                return f"text at {_shown(path)} {_LONE_SURROGATE}"
            continue
        if not isinstance(node, Mapping | list | tuple):
            continue
        if depth >= max_depth:
            return f"JSON nested deeper than {max_depth} levels at {_shown(path)}; no notification field is"
        if isinstance(node, Mapping):
            for key, child in node.items():
                key_text = key if isinstance(key, str) else str(key)
                child_path = f"{path}.{key_text}" if path else key_text
                if strings and has_surrogate(key_text):
                    return (
                        f"a key at {_shown(child_path)} holds a lone surrogate, which no SCC or Pub/Sub message carries"
                    )
                stack.append((child, child_path, depth + 1))
        else:
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))
    return None


def _shown(path: str) -> str:
    return clean(path, 120) or "the top level"
