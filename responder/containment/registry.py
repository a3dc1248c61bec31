"""The explicit list of actions: the policy file, its schema, the plan and the runner take them from here. A new
action is its module and one line here, and more besides: docs/architecture.md ("Where to add") lists the rest."""

from __future__ import annotations

from responder.containment.base import Action, Traits
from responder.containment.capture import CaptureAction
from responder.containment.delete import DeleteAction
from responder.containment.isolate import IsolateAction
from responder.containment.label import LabelAction

ACTIONS: dict[str, Action] = {a.name: a for a in (LabelAction(), IsolateAction(), CaptureAction(), DeleteAction())}
EVIDENCE = CaptureAction.name  # what runs ahead of anything destructive, unless the policy opts out
ESCALATION = DeleteAction.name  # what an isolation that cannot end a live session escalates to


# A name no policy can use (a release step, a rollback, a crash): nothing is true of it.
_UNKNOWN = Traits()


def traits(name: str) -> Action | Traits:
    """What the action called ``name`` is (isolating, destructive, ...); all false for a name no policy can use."""
    return ACTIONS.get(name) or _UNKNOWN


def get(name: str) -> Action:
    """The action called ``name``; KeyError lists the valid ones."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; valid: {', '.join(sorted(ACTIONS))}") from None
