"""The report's Identity section: who a token stolen from the pod is, and what it can still do.

Built from the investigation's ``service_account`` and ``rights`` branches and from the identity step's result. Every
name here came from the cluster (binding, role and Secret names, rule verbs and resources, annotations), so each is
cleaned and bounded here, and the Markdown renderer puts each in a code span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from responder.containment import registry
from responder.containment.results import ActionResult
from responder.intake.sanitize import clean
from responder.intake.triage import Target
from responder.investigation.investigator import Investigation
from responder.investigation.rights import Grant, Rights, username
from responder.report.models import BindingInfo, IdentitySection, RuleInfo

WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"  # noqa: S105  (a Secret type, named in a command)
PROJECT_NUMBER = "PROJECT_NUMBER"
PROJECT_ID = "PROJECT_ID"
MAX_NAME = 253
MAX_SECRETS = 50


def writes_refused(actions: Sequence[ActionResult]) -> tuple[bool, str]:
    """Whether the cluster now refuses writes with the pod's token (the identity step's outcome), and why (not)."""
    step = next((a for a in actions if a.action == registry.IDENTITY), None)
    if step is None:
        return False, "no identity step ran: writes with the pod's token are not refused"
    refused = step.status.value != "failed" and not step.dry_run and "refused" in step.reason
    return refused, clean(step.reason, 600)


def google_principal(project: str, namespace: str, account: str) -> str:
    """The Workload Identity Federation principal of the account (IAM can grant it roles directly, with no
    annotation). The project number is not in any cluster fact the responder reads; a numeric project is one."""
    number, project_id = (project, PROJECT_ID) if project.isdigit() else (PROJECT_NUMBER, project)
    return (
        f"principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/"
        f"{project_id}.svc.id.goog/subject/ns/{namespace}/sa/{account}"
    )


def identity_section(target: Target, investigation: Investigation, actions: Sequence[ActionResult]) -> IdentitySection:
    """The section; what could not be read says so (a failed read is never shown as "no rights")."""
    namespace = target.namespace
    pod = investigation.pod
    account_name = clean((pod.service_account if pod else None) or "default", MAX_NAME)
    account = investigation.service_account
    annotation = account.annotations.get(WORKLOAD_IDENTITY_ANNOTATION) if account else None
    principal = clean(google_principal(target.cluster.project, namespace, account_name), 600)
    if annotation:
        google, source = clean(annotation, 320), "annotation"
        note = (
            f"{WORKLOAD_IDENTITY_ANNOTATION}: the token can be exchanged for this Google service account's access "
            f"tokens; its IAM roles, and any granted to {principal}, are what it reaches on Google Cloud"
        )
    else:
        google, source = principal, "principal"
        read = "no" if account else "the service account could not be read, so no"
        number = f" ({PROJECT_NUMBER}: the project's number, from gcloud projects describe)"
        note = (
            f"{read} {WORKLOAD_IDENTITY_ANNOTATION} annotation: on a cluster with Workload Identity, the IAM roles "
            "granted to this principal are what the token reaches on Google Cloud"
            + (number if PROJECT_NUMBER in google else "")
        )
    found = investigation.rights
    refused, why = writes_refused(actions)
    secrets = tuple(clean(s, MAX_NAME) for s in (account.secrets if account else ())[:MAX_SECRETS])
    return IdentitySection(
        namespace=namespace,
        service_account=account_name,
        username=clean(username(namespace, account_name), 400),
        google_identity=google,
        google_identity_source=source,
        google_identity_note=clean(note, 800),
        rights_status=_status(investigation, "rights"),
        bindings=tuple(_binding(g) for g in found.grants) if found else (),
        bindings_truncated=found.truncated if found else 0,
        defaults_skipped=found.defaults_skipped if found else 0,
        can_write=_phrases(found, "writes"),
        can_read=_phrases(found, "reads"),
        writes_refused=refused,
        writes_note=why,
        account_read=account is not None,
        automount_token=account.automount_token if account else None,
        secret_tokens=secrets,
        secrets_command=f"kubectl get secrets -n {namespace} --field-selector type={TOKEN_SECRET_TYPE}",
    )


def _status(investigation: Investigation, name: str) -> str:
    branch = investigation.branches.get(name)
    if branch is None:
        return "not run"
    return branch.status + (f": {clean(branch.detail, 300)}" if branch.detail else "")


def _phrases(found: Rights | None, access: Literal["writes", "reads"]) -> tuple[str, ...]:
    return tuple(clean(p, 400) for p in found.summary(access)) if found else ()


def _binding(grant: Grant) -> BindingInfo:
    return BindingInfo(
        kind=grant.kind,
        namespace=clean(grant.namespace, 63) if grant.namespace else None,
        name=clean(grant.name, MAX_NAME),
        role_kind=clean(grant.role_kind, 40),
        role_name=clean(grant.role_name, MAX_NAME),
        subject=clean(grant.subject, 400),
        direct=grant.direct,
        role_found=grant.role_found,
        rules=tuple(
            RuleInfo(
                verbs=tuple(clean(v, 64) for v in rule.verbs),
                targets=tuple(clean(t, 300) for t in rule.targets),
                writes=bool(rule.writes),
            )
            for rule in grant.rules
        ),
        rules_truncated=grant.rules_truncated,
    )
