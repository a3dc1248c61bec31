"""Make attacker-shaped values safe to print.

Values in a finding come partly from the compromised container (process arguments, file paths); an attacker can put
terminal escapes, fake log lines or megabytes in them. Everything that reaches a log line or report passes through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_TEXT = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(value: object, limit: int = MAX_TEXT) -> str:
    """Return ``value`` as text with control and bidi characters replaced and the length bounded."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", text)
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
