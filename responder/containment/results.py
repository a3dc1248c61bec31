"""An action's result: the three states every action ends in, and how a result is built.

Its own module because the record, the outcome rule, the write-back and the operator's commands read results, and
none of them should import what an action runs with (:mod:`.context`) to read one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from responder.errors import Conflict, NotFound

if TYPE_CHECKING:
    from responder.containment.context import ActionContext


class Status(StrEnum):
    """The three result states of every action."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"


class ActionResult(BaseModel):
    """One action's outcome, as it appears in the decision record."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    action: str
    status: Status
    reason: str
    dry_run: bool = False
    changes: tuple[str, ...] = ()
    details: dict[str, Any] = Field(default_factory=dict)


def result(
    action: str,
    status: Status,
    reason: str,
    ctx: ActionContext,
    changes: list[str] | tuple[str, ...] = (),
    **details: Any,
) -> ActionResult:
    """Build a result, prefixing dry-run reasons so nobody mistakes a plan for a change."""
    if ctx.dry_run and status is Status.SKIPPED and changes:
        reason = f"dry-run: would {reason}"
    return ActionResult(
        action=action, status=status, reason=reason, dry_run=ctx.dry_run, changes=tuple(changes), details=details
    )


def pod_gone(
    action: str, ctx: ActionContext, exc: NotFound | Conflict, changes: list[str] | tuple[str, ...] = ()
) -> ActionResult:
    """The skipped result when the pod vanished, or was replaced under us (the new pod is never touched)."""
    # ``gone``: the compromised pod no longer runs, so neither does its shell (the outcome rule reads it).
    if isinstance(exc, NotFound):
        return result(action, Status.SKIPPED, "pod no longer exists", ctx, changes, gone=True)
    return result(action, Status.SKIPPED, "pod was replaced (UID changed); the new pod is not touched", ctx, gone=True)
