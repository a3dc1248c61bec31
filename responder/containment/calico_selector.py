"""Calico's selector expressions (``selector``, ``namespaceSelector`` of a GlobalNetworkPolicy), parsed to a predicate
over a label set, so that the cluster tier's judgement can tell whether a Calico policy selects the quarantined pod.

The grammar is Calico's documented one: ``all()``, ``global()``, ``has(k)``, ``k == 'v'``, ``k != 'v'``,
``k in {'a', 'b'}``, ``k not in {...}``, ``k contains 's'``, ``k starts with 's'``, ``k ends with 's'``, combined with
``!``, ``&&``, ``||`` and parentheses. An expression this parser does not understand raises :class:`SelectorError`:
the caller then counts the policy as selecting the pod, since a selector it cannot read is not one it may assume
misses the pod.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Predicate = Callable[[Mapping[str, str]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<op>==|!=|&&|\|\||[!(){},])
      | (?P<word>[A-Za-z0-9_./\-]+)
    )""",
    re.VERBOSE,
)
MAX_LENGTH = 4096  # a selector is a short expression; a longer one is not read (and counts as selecting the pod)


class SelectorError(ValueError):
    """The expression is not one this parser reads."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise SelectorError(f"unexpected character at {pos}")
        out.append(found.group(found.lastgroup or "word"))
        pos = found.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> str | None:
        i = self.at + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise SelectorError(f"expected {expected or 'more'}, got {token!r}")
        self.at += 1
        return token

    def expression(self) -> Predicate:
        terms = [self.conjunction()]
        while self.peek() == "||":
            self.take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda labels: any(t(labels) for t in terms))

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self.peek() == "&&":
            self.take()
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else (lambda labels: all(t(labels) for t in terms))

    def unary(self) -> Predicate:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda labels: not inner(labels)
        if self.peek() == "(":
            self.take()
            inner = self.expression()
            self.take(")")
            return inner
        return self.atom()

    def atom(self) -> Predicate:
        word = self.take()
        if word in ("all", "global") and self.peek() == "(":
            self.take("(")
            self.take(")")
            # global() selects non-namespaced resources (host endpoints, global network sets): never a pod.
            return (lambda _: True) if word == "all" else (lambda _: False)
        if word == "has" and self.peek() == "(":
            self.take("(")
            key = self.key()
            self.take(")")
            return lambda labels: key in labels
        key = self._check_key(word)
        op = self.take()
        if op in ("==", "!="):
            value = self.string()
            if op == "==":
                return lambda labels: labels.get(key) == value
            return lambda labels: labels.get(key) != value
        if op == "in":
            members = self.set()
            return lambda labels: labels.get(key) in members
        if op == "not":
            self.take("in")
            members = self.set()
            return lambda labels: labels.get(key) not in members
        if op == "contains":
            part = self.string()
            return lambda labels: key in labels and part in labels[key]
        if op in ("starts", "ends"):
            self.take("with")
            part = self.string()
            if op == "starts":
                return lambda labels: key in labels and labels[key].startswith(part)
            return lambda labels: key in labels and labels[key].endswith(part)
        raise SelectorError(f"unknown operator {op!r}")

    def key(self) -> str:
        return self._check_key(self.take())

    @staticmethod
    def _check_key(word: str) -> str:
        if word in ("==", "!=", "&&", "||", "!", "(", ")", "{", "}", ",") or word[:1] in ("'", '"'):
            raise SelectorError(f"expected a label key, got {word!r}")
        return word

    def string(self) -> str:
        token = self.take()
        if len(token) < 2 or token[0] not in ("'", '"'):
            raise SelectorError(f"expected a quoted value, got {token!r}")
        return token[1:-1]

    def set(self) -> frozenset[str]:
        self.take("{")
        members: set[str] = set()
        while self.peek() != "}":
            members.add(self.string())
            if self.peek() == ",":
                self.take()
        self.take("}")
        return frozenset(members)


def parse(text: str | None) -> Predicate:
    """The predicate of a Calico selector; an absent or blank selector is ``all()``, as Calico reads it."""
    if text is None or not text.strip():
        return lambda _: True
    if len(text) > MAX_LENGTH:
        raise SelectorError(f"longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokens(text))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise SelectorError(f"unexpected {parser.peek()!r} after the expression")
    return predicate
