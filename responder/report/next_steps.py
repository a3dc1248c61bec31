"""What is left for a human after the responder acted: the report's next steps, in runbook order."""

from __future__ import annotations

from responder.containment import registry
from responder.containment.results import ActionResult, Status
from responder.containment.revoke import RevokeAction
from responder.intake.categories import CategoryProfile
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.investigation import rights
from responder.report.identity import writes_refused
from responder.report.models import IncidentReport
from responder.report.outcome import Outcome, not_contained_prefix
from responder.report.record import replaced, session_left_alive


def next_steps(
    outcome: Outcome, report: IncidentReport, target: Target, dry_run: bool, profile: CategoryProfile
) -> list[str]:
    """What is left for a person, in the words of the finding's category (``profile``)."""
    todo: list[str] = []
    actions = list(outcome.record.actions)
    isolate = next((a for a in actions if registry.traits(a.action).isolating), None)
    if outcome.not_contained:
        # The first line is what the person paged must do: the record's reason says why nothing else could.
        todo.append(
            f"Not contained: the {profile.noun} in {target.namespace}/{target.pod} {profile.still}. "
            f"{clean(outcome.record.reason.removeprefix(not_contained_prefix(profile)), 300)}. Save what you need "
            f"(step 5), then delete the pod by hand (kubectl delete pod -n {target.namespace} {target.pod}) or kill "
            f"the {profile.noun}'s process, and fix what stopped the responder."
        )
    elif session_left_alive(actions, profile):
        alive_isolate = next(
            a for a in actions if registry.traits(a.action).isolating and a.details.get("session_survives")
        )
        what = clean(alive_isolate.details.get("established_connections", ""), 80)
        todo.append(
            f"The {profile.noun} {profile.still}: isolation left established connections {what} "
            f"({clean(alive_isolate.details.get('dataplane', ''), 120)}). End it now: delete the pod "
            f"{target.namespace}/{target.pod} after saving what you need (step 5), or kill the {profile.noun}'s "
            "process; new connections are already blocked."
        )
    owner = report.owner_info
    if owner:
        todo.append(f"Contact the owner: {owner.value} ({owner.source} {owner.key}).")
    else:
        project = report.finding.project if report.finding else target.cluster.project
        todo.append(
            f"Find and contact the owner of project {project}: no owner label was found on the namespace or "
            "cluster (or they could not be read)."
        )
    pod_ref = f"{target.namespace}/{target.pod}"
    # A category that is not contained by default is often harmless (an unexpected package install): the person
    # decides whether it is an incident before ending the pod.
    unless = "" if profile.contained_by_default else f"If the {profile.noun} was not expected: "
    if dry_run:
        todo.append(
            f"The responder ran in dry-run: nothing in the cluster was changed. {unless}Contain the pod by hand."
        )
    if replaced(actions):
        controller = report.pod.owner_chain[-1] if report.pod and report.pod.owner_chain else None
        owner_text = f" by {controller.kind} {controller.name}" if controller else ""
        todo.append(
            f"Confirm the replacement of {pod_ref}{owner_text} is running, healthy, and built from a trusted image "
            "(the compromised image may still be the one deployed)."
        )
    else:
        todo.append(
            f"{unless + 'stop' if unless else 'Stop'} or delete the compromised container ({pod_ref}) and confirm it "
            "is replaced by a clean one (step 5 lists the delete command)."
        )
    if isolate is not None and (
        isolate.status.value == "failed"
        or isolate.details.get("ineffective")
        or (isolate.status.value == "skipped" and not dry_run)
    ):
        todo.append(f"Isolation did not take effect ({clean(isolate.reason, 200)}): delete the pod or cordon the node.")
    remote = report.finding.remote if report.finding else None
    if remote:
        todo.append(f"Block egress to {remote} and look for other workloads that connected to it.")
    todo.extend(profile.advice)
    if report.pod:
        todo.append(_identity_step(report, target, actions))
    unavailable = sorted(k for k, v in report.enrichment.items() if not v.startswith("ok"))
    if unavailable:
        todo.append(f"Enrichment incomplete ({', '.join(unavailable)}): run the step 4 and 5 filters and commands.")
    todo.append("Set the finding to INACTIVE in Security Command Center once the incident is resolved.")
    return todo


# -------------------------------------------------------------------------------------------------------- helpers
def _identity_step(report: IncidentReport, target: Target, actions: list[ActionResult]) -> str:
    """What the pod's stolen credentials can still do: the identity step's outcome, and what admission cannot
    refuse (reads, tokens not bound to the pod, Google access tokens already taken). The details (bindings, the
    Google identity, Secret-based tokens, the writes since the event) are the report's Identity section."""
    pod = report.pod
    account = rights.username(target.namespace, (pod.service_account if pod else None) or "default")
    refused, why = writes_refused(actions)
    if refused:
        writes = f"Writes with the pod's service-account token ({account}) are refused by the cluster"
    else:
        writes = f"The pod's service-account token ({account}) can still WRITE ({why}): contain it by hand"
    host = (
        " it ran on the node's network, so it could reach the node's metadata server and the NODE's identity;"
        if (pod and pod.host_network)
        else ""
    )
    identity = report.identity
    if identity is not None and identity.rights_status == "ok":
        review = (
            f"Review what {account} may read and write ({len(identity.bindings)} binding(s) in step 3, Identity) "
            "and the writes it made since the event (same section)"
        )
    else:
        review = (
            f"Review what {account} may read and write (the bindings could not be listed: kubectl get "
            f"rolebindings,clusterrolebindings -A -o wide | grep {target.namespace}:)"
        )
    if identity is None:
        google = "its Google identity (check Workload Identity Federation principals for the namespace and account)"
    elif identity.google_identity_source == "annotation":
        google = (
            f"its Google identity {identity.google_identity} (Workload Identity: review that account's IAM roles and "
            "its keys)"
        )
    else:
        google = f"the IAM roles granted to its Google principal {identity.google_identity}"
    revoked = next((a for a in actions if a.action == RevokeAction.name and a.status is Status.SUCCEEDED), None)
    reads = "its reads are not (admission never sees a read)"
    if revoked is not None:
        n = len(revoked.details.get("revoked") or ())
        reads = (
            f"its reads and writes through the {n} binding(s) naming only it are refused too (revoked; `release` "
            "recreates them), but not those through bindings it shares or its groups"
        )
    return (
        f"{writes}; {reads}. {review}, {google}, and Secret-based tokens "
        f"and tokens requested for the account (not bound to the pod), which no policy covers (step 3 names what was "
        f"found and how to find the rest); rotate what the pod could read.{host} A Google access token already "
        "taken stays valid until it expires (about an hour); the deny-all's egress blocks new requests to the "
        "metadata server."
    )
