"""The explicit list of actions. Adding an action means adding its module and one line here."""

from __future__ import annotations

from responder.containment.base import Action
from responder.containment.capture import CaptureAction
from responder.containment.delete import DeleteAction
from responder.containment.isolate import IsolateAction
from responder.containment.label import LabelAction

ACTIONS: dict[str, Action] = {a.name: a for a in (LabelAction(), IsolateAction(), CaptureAction(), DeleteAction())}


def get(name: str) -> Action:
    """The action called ``name``; KeyError lists the valid ones."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; valid: {', '.join(sorted(ACTIONS))}") from None
