"""The labels, annotations and object names the responder writes.

A domain of its own (``responder.rsr.dev``), so they can never collide with a workload's labels. They are here, apart
from any action, because the actions, the rollback, the progress judgement and the operator's ``status`` and
``release`` all read them, and none of those should need to import an action to know a key.
"""

from __future__ import annotations

PREFIX = "responder.rsr.dev"
QUARANTINE_LABEL = f"{PREFIX}/quarantine"
FINDING_ANNOTATION = f"{PREFIX}/finding"
ACTIONS_ANNOTATION = f"{PREFIX}/actions"
AT_ANNOTATION = f"{PREFIX}/at"
ORIGINAL_LABELS_ANNOTATION = f"{PREFIX}/original-labels"
# The finding whose quarantine this pod carried when another finding's delivery recorded itself on it: a rollback
# of the later one (refuted by SCC) hands the quarantine back to it instead of lifting it.
PRIOR_FINDING_ANNOTATION = f"{PREFIX}/prior-finding"
# Left on a released pod (``release``): when, so that a redelivery of the finding it was released from is not acted on.
RELEASED_ANNOTATION = f"{PREFIX}/released-at"
DENY_ALL_POLICY = "rsr-quarantine-deny-all"
MANAGED_BY = {"app.kubernetes.io/managed-by": "reverse-shell-responder"}

# Namespaces a GKE cluster runs its own machinery in, and the responder's own. Always protected: configuration can
# only add to this floor (an empty or invalid list never leaves the cluster's system pods open to deletion).
PROTECTED_FLOOR = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "gke-*",
    "gmp-*",
    "config-management-*",
    "resource-group-system",
    "responder-system",
)
