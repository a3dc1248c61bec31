"""JSON from outside, parsed within bounds.

A delivery is attacker-shaped input: Python's ``json`` turns a number with thousands of digits into an int (and
refuses past 4,300 digits with a bare ``ValueError``), ``1e999`` into infinity and ``NaN`` into a float that compares
with nothing. No field of a notification or an envelope needs any of that (int64 has 19 digits), so such values are
refused here with a reason, once, for every caller. So is text no Google service writes: a lone surrogate (not
Unicode, and fatal to the first log line that holds it) and nesting deeper than any notification
(:func:`responder.intake.sanitize.untrusted_text`).
"""

from __future__ import annotations

import json
from typing import Any

from responder.errors import JsonLimit
from responder.intake.sanitize import surrogate_free, untrusted_text

MAX_INT_DIGITS = 24  # int64 has at most 19 digits (+ sign); some headroom, nothing more
MAX_FLOAT_CHARS = 64


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonLimit(f"a number with {len(text.lstrip('-'))} digits exceeds any field ({MAX_INT_DIGITS} at most)")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_FLOAT_CHARS:
        raise JsonLimit(f"a number of {len(text)} characters exceeds any field ({MAX_FLOAT_CHARS} at most)")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonLimit(f"number {text[:30]} overflows a double")
    return value


def _constant(name: str) -> Any:
    raise JsonLimit(f"{name} is not a JSON number (proto3 JSON writes it as a string)")


def loads(text: str | bytes) -> Any:
    """``json.loads`` with bounded numbers, depth and text; raises ``ValueError`` (``JSONDecodeError`` or
    :class:`JsonLimit`) or ``RecursionError`` for input nested deeper than the parser goes."""
    value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    problem = untrusted_text(value, strings=not surrogate_free(text))
    if problem is not None:
        raise JsonLimit(problem)
    return value
