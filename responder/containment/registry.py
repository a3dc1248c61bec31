"""The explicit list of actions. Adding an action means adding its module, one line here, and what the tests below ask
for by name (its RBAC rule, its guard variable, its README row): nothing else.

Everything else asks the registry what an action is (its declarations, :mod:`.action`), never its name; what the
reviewed artifacts must say for it (RBAC, the admission guard, the README's table) is checked against the same
declarations by ``tests/unit/test_action_declarations.py``, which names the action and the missing piece.
"""

from __future__ import annotations

from responder.containment.action import Action, Traits
from responder.containment.capture import CaptureAction
from responder.containment.delete import DeleteAction
from responder.containment.detach import DetachAction
from responder.containment.identity import IdentityAction
from responder.containment.isolate import IsolateAction
from responder.containment.label import LabelAction
from responder.containment.revoke import RevokeAction

# What a policy may name, in the order the README's table lists them.
ACTIONS: dict[str, Action] = {
    a.name: a for a in (LabelAction(), IsolateAction(), CaptureAction(), RevokeAction(), DeleteAction())
}
# Run by the runner, never named in a policy: ``detach`` is the second half of ``isolate`` with ``detach: true``;
# ``identity`` follows whichever step quarantines the pod.
INTERNAL: dict[str, Action] = {a.name: a for a in (DetachAction(), IdentityAction())}
EVIDENCE = CaptureAction.name  # what runs ahead of anything that needs evidence first, unless the policy opts out
ESCALATION = DeleteAction.name  # what an isolation that cannot end a live session escalates to
DETACH = DetachAction.name
IDENTITY = IdentityAction.name


# A name no policy can use (a release step, a rollback, a crash): nothing is true of it.
_UNKNOWN = Traits()


def traits(name: str) -> Action | Traits:
    """What the action called ``name`` is (isolating, ends the pod, ...); all false for a name that is no action."""
    return ACTIONS.get(name) or INTERNAL.get(name) or _UNKNOWN


def every() -> dict[str, Action]:
    """Every action, the policy's and the runner's own: what the declarations' checks walk."""
    return {**ACTIONS, **INTERNAL}


def get(name: str) -> Action:
    """The policy action called ``name``; KeyError lists the valid ones."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unknown action {name!r}; valid: {', '.join(sorted(ACTIONS))}") from None


def runnable(name: str) -> Action:
    """The action the runner runs for a step called ``name`` (a policy action, or one of its own)."""
    return INTERNAL.get(name) or get(name)
