"""One exception tree for the whole responder.

What a caller does with each:
- invalid input (``InvalidEnvelope``, ``InvalidFinding``): recorded as ``reject`` and acknowledged; no redelivery
  can make it valid;
- everything that stops a containment once the input is valid (``TransientError``, ``Forbidden``, ``ConfigError``,
  a ``PermanentError`` from a dependency): recorded as ``failed`` with what was already done, then raised so Pub/Sub
  redelivers and, if it never heals, dead-letters the message. A finding is never acknowledged as handled while
  its pod was not contained.
SDK exceptions are translated into this tree in ``responder/adapters`` with ``raise ... from exc``. Every exception
the responder defines lives here, and nowhere else.
"""

from __future__ import annotations


class ResponderError(Exception):
    """Base of every error the responder raises on purpose."""


class PermanentError(ResponderError):
    """Retrying the same request cannot help (bad input, a request the API refuses as invalid)."""

    code = "bad_input"  # the decision record's code when input is rejected for this


class InvalidEnvelope(PermanentError):
    """The delivery is not a Pub/Sub message we can read (wrong type, bad base64, bad JSON)."""

    code = "bad_envelope"


class InvalidFinding(PermanentError):
    """The notification decodes but does not describe a finding we can trust (missing or malformed fields)."""

    code = "bad_finding"


class InvalidIdentifier(InvalidFinding):
    """An identifier from the finding breaks Kubernetes or GCP naming rules; it is rejected, never escaped."""


class JsonLimit(PermanentError, ValueError):
    """A value is valid JSON but outside what any field of ours can hold (``responder.intake.safejson``). Also a
    ``ValueError``, like the JSON parser's own errors, so whoever reads outside JSON handles both alike."""


class ConfigError(ResponderError):
    """Settings or the policy file are invalid; the responder refuses to act rather than act on half a policy, and
    the message is redelivered (then dead-lettered) so it is not lost while an operator fixes the settings."""


class TransientError(ResponderError):
    """A dependency failed in a way that may heal (5xx, 429, timeout): raise so the message is redelivered."""


class NotFound(ResponderError):
    """The object named does not exist (any more)."""


class Conflict(ResponderError):
    """The object changed under us (UID precondition, resourceVersion) or already exists."""


class PodReplaced(Conflict):
    """The pod by that name is no longer the one the responder acted on: another UID now, or gone (``actual_uid``
    None). What was read from it (exec output, logs) cannot be told apart from a same-named replacement's, so it is
    refused as evidence, never filed as the compromised pod's."""

    def __init__(self, namespace: str, name: str, expected_uid: str, actual_uid: str | None) -> None:
        now = f"is now uid {actual_uid}" if actual_uid else "is gone"
        super().__init__(f"pod {namespace}/{name} {now}, not uid {expected_uid}")
        self.namespace, self.name = namespace, name
        self.expected_uid, self.actual_uid = expected_uid, actual_uid


class PoliciesKeptChanging(Conflict):
    """Every re-read of the namespace's policies lost a race: unlike a UID conflict, nothing about the pod."""


class Forbidden(ResponderError):
    """The responder's identity lacks a permission (401/403). Never read as "not found": on the containment path it
    is a failure that is redelivered until someone grants the right or the message dead-letters."""


class Unavailable(ResponderError):
    """A dependency is not configured here (no cluster credentials, no SCC access): enrichment is marked unavailable."""


class DenyAllNotEnsured(ResponderError):
    """The deny-all policy could not be made exactly what isolation needs: nothing else may be written."""


class IsolationNotEnsured(ResponderError):
    """A policy that reopens the quarantined pod is still there after its exclusion was written."""


class BudgetUnavailable(ResponderError):
    """The blast-radius counter cannot be read or written: destructive actions are refused (the budget fails
    closed)."""


class KubeHttpError(ResponderError):
    """A non-2xx answer from the apiserver on the raw JSON transport (``status`` 0: no answer at all).

    Raw, like the official client's ``ApiException``: ``responder.adapters.kube_errors`` translates it into the
    classes above (NotFound, Conflict, Forbidden, TransientError, PermanentError) before it leaves the adapters.
    """

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.reason = reason
        self.body = body
