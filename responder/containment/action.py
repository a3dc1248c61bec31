"""What an action is: its typed parameters, the traits it declares, and the entry point the runner calls.

The registry (:mod:`.registry`) lists the actions; everything else (the runner, the planner, the record, the
write-back, the report) asks an action's declaration, never its name.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from responder.containment.context import ActionContext
from responder.containment.results import ActionResult


class ActionParams(BaseModel):
    """Base of every action's typed parameters; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Traits:
    """What an action is, declared on its class. An action declares only what is true of it: by default it writes
    nothing a refuted message's rollback cannot take back exactly, runs in plan order, and ends nothing."""

    isolating: ClassVar[bool] = False
    verified_first: ClassVar[bool] = False
    read_only: ClassVar[bool] = False
    destructive: ClassVar[bool] = False
    needs_capture_before: ClassVar[bool] = False


class Action(Protocol):
    """An action module's entry point."""

    name: ClassVar[str]
    isolating: ClassVar[bool]  # cuts the pod off: its writes go out first, and everything else waits for them
    verified_first: ClassVar[bool]  # a write a refuted message's rollback cannot take back: held until SCC vouches
    read_only: ClassVar[bool]  # only reads: may run alongside containment
    destructive: ClassVar[bool]  # ends the pod: counted against the blast-radius budget
    needs_capture_before: ClassVar[bool]  # what it ends is evidence: capture runs first (unless the policy opts out)
    held_means: ClassVar[str]  # what the record says it did not do while SCC had not vouched for the message
    Params: ClassVar[type[ActionParams]]

    def run(self, ctx: ActionContext, params: ActionParams) -> ActionResult: ...
