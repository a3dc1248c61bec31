"""A plan: the ordered actions to run for one finding, and the ordering rules every plan obeys.

The policy stage decides *which* actions run (``responder.policy``); this module owns *how* a list of actions is
ordered, so that the runner's escalation (a delete added when isolation cannot work) follows the same rules as a plan
read from the policy file.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from responder.config import Mode
from responder.containment import registry
from responder.containment.action import ActionParams


class PlannedStep(BaseModel):
    """One action to run, with its typed parameters."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    action: str
    params: ActionParams
    # Shown to operators (``plan``, the report): the step ends the pod. The runner asks the action's own traits.
    destructive: bool = False


class Plan(BaseModel):
    """What will run for one finding, and what was left out and why.

    ``hold`` is the machine code when the finding is deliberately left alone (``protected``, ``exempt``, ``sample``,
    ``report_only``): the decision record is then ``ignore``, since nothing is done or attempted.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    mode: Mode
    rule: str | None
    steps: tuple[PlannedStep, ...] = ()
    skipped: tuple[str, ...] = ()
    hold: str | None = None

    @property
    def dry_run(self) -> bool:
        """True unless the mode is enforce."""
        return self.mode != "enforce"


def step(params: ActionParams, action: str) -> PlannedStep:
    """A planned step for ``action`` with ``params``; whether it ends the pod comes from the action itself."""
    return PlannedStep(action=action, params=params, destructive=registry.get(action).ends_pod)


def default_step(action: str) -> PlannedStep:
    """``action`` with its default parameters."""
    return step(registry.get(action).Params(), action)


def ordered(steps: list[PlannedStep], capture_before_destructive: bool) -> list[PlannedStep]:
    """Isolation first (it cuts the attacker off; labelling and evidence can follow a moment later), then evidence
    ahead of the first destructive step: a capture planned later is moved there, and one is added when none is
    planned at all, unless the policy opts out (``capture_before_destructive: false``)."""
    steps = sorted(steps, key=lambda s: 0 if registry.traits(s.action).isolating else 1)
    return with_evidence_first(steps, capture_before_destructive)


def with_evidence_first(steps: list[PlannedStep], capture_before_destructive: bool) -> list[PlannedStep]:
    """Capture ahead of the first step that needs evidence first (stable otherwise); see :func:`ordered`."""
    first_destructive = next((i for i, s in enumerate(steps) if registry.traits(s.action).needs_evidence_first), None)
    if first_destructive is None:
        return list(steps)
    late = [s for s in steps[first_destructive:] if registry.traits(s.action).read_only]
    steps = [s for s in steps if s not in late]
    planned = late or any(registry.traits(s.action).read_only for s in steps[:first_destructive])
    if not planned and capture_before_destructive:
        late = [default_step(registry.EVIDENCE)]
    steps[first_destructive:first_destructive] = late
    return steps
