"""The explicit list of actions. Adding an action means adding its module and one line here."""

from __future__ import annotations

from responder.containment.base import Action
from responder.containment.capture import CaptureAction
from responder.containment.delete import DeleteAction
from responder.containment.isolate import IsolateAction
from responder.containment.label import LabelAction

ACTIONS: dict[str, Action] = {a.name: a for a in (LabelAction(), IsolateAction(), CaptureAction(), DeleteAction())}
EVIDENCE = CaptureAction.name  # what runs ahead of anything destructive, unless the policy opts out
ESCALATION = DeleteAction.name  # what an isolation that cannot end a live session escalates to


def reads_only(name: str) -> bool:
    """Whether the action called ``name`` only reads (evidence); False for names no policy can use."""
    action = ACTIONS.get(name)
    return action is not None and action.read_only


def isolating(name: str) -> bool:
    """Whether the action called ``name`` makes the isolating writes; False for names no policy can use."""
    action = ACTIONS.get(name)
    return action is not None and action.isolating


def destructive(name: str) -> bool:
    """Whether the action called ``name`` ends the pod; False for names no policy can use."""
    action = ACTIONS.get(name)
    return action is not None and action.destructive


def needs_capture_before(name: str) -> bool:
    """Whether evidence is captured before the action called ``name`` runs; False for names no policy can use."""
    action = ACTIONS.get(name)
    return action is not None and action.needs_capture_before


def get(name: str) -> Action:
    """The action called ``name``; KeyError lists the valid ones."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; valid: {', '.join(sorted(ACTIONS))}") from None
