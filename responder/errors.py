"""One exception tree for the whole responder.

The split that matters is permanent versus transient: a permanent error is acknowledged (Pub/Sub must not redeliver
a message that can never succeed), a transient one is raised out of the handler so Pub/Sub redelivers it.
SDK exceptions are translated into this tree in ``responder/adapters`` with ``raise ... from exc``.
"""

from __future__ import annotations


class ResponderError(Exception):
    """Base of every error the responder raises on purpose."""


class PermanentError(ResponderError):
    """Retrying cannot help: acknowledge, record, move on."""


class InvalidEnvelope(PermanentError):
    """The delivery is not a Pub/Sub message we can read (wrong type, bad base64, bad JSON)."""


class InvalidFinding(PermanentError):
    """The notification decodes but does not describe a finding we can trust (missing or malformed fields)."""


class InvalidIdentifier(InvalidFinding):
    """An identifier from the finding breaks Kubernetes or GCP naming rules; it is rejected, never escaped."""


class ConfigError(PermanentError):
    """Settings or the policy file are invalid; the responder refuses to act rather than act on half a policy."""


class TransientError(ResponderError):
    """A dependency failed in a way that may heal (5xx, 429, timeout): raise so the message is redelivered."""


class NotFound(ResponderError):
    """The object named does not exist (any more)."""


class Conflict(ResponderError):
    """The object changed under us (UID precondition, resourceVersion) or already exists."""


class Forbidden(PermanentError):
    """The responder's identity lacks a permission; retrying will not grant it."""


class Unavailable(ResponderError):
    """A dependency is not configured here (no cluster credentials, no SCC access): enrichment is marked unavailable."""
