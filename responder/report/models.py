"""The incident report's schema: one model per runbook step, every attacker-shaped value already bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from responder.investigation import links
from responder.investigation.investigator import LogKind
from responder.policy.rules import Defaults

SCHEMA_VERSION = 1
MAX_ARGS = 64
MAX_ARG_CHARS = 1024
MAX_ARGS_TOTAL = 8192
MAX_LABELS = 50
MAX_LABEL_VALUE = 256
MAX_ENTRY_CHARS = 2000
MD_ENTRIES_PER_SEARCH = 10
MAX_TREE_LINES = 300
MAX_TAIL_LINES = 100
MAX_LINE_CHARS = 512
STEP_TITLES = (
    "1. Finding details",
    "2. Cluster and node",
    "3. Pod and owner chain",
    "4. Logs",
    "5. Inspect the running container",
    "6. MITRE ATT&CK and VirusTotal",
    "7. Respond",
)
_DEFAULT_OWNER_KEYS = Defaults().owner_keys


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


# ------------------------------------------------------------------------------------------------------ the model


class ProcessInfo(_Model):
    """A process the finding names; ``args`` are sanitised and bounded."""

    name: str | None = None
    binary: str | None = None
    sha256: str | None = None
    virustotal: str | None = None
    args: tuple[str, ...] = ()
    args_truncated: bool = False
    pid: int | None = None
    parent_pid: int | None = None
    user_id: int | None = None


class FindingSection(_Model):
    """Step 1: the finding as SCC reported it."""

    name: str | None = None
    canonical_name: str | None = None
    category: str | None = None
    severity: str | None = None
    state: str | None = None
    api_version: str | None = None
    event_time: datetime | None = None
    create_time: datetime | None = None
    resource_name: str | None = None
    project: str | None = None
    project_display_name: str | None = None
    image_uri: str | None = None
    container: str | None = None
    node: str | None = None
    node_pool: str | None = None
    # What ran, as the category's profile names it ("reverse shell"), and whether the category reports a connection
    # (``remote``, ``local``): the report's wording follows the category, not one threat.
    what: str | None = None
    reports_connection: bool = False
    remote: str | None = None  # the attacker's end of the connection (a reverse shell's redirected stdin), ip:port
    local: str | None = None
    processes: tuple[ProcessInfo, ...] = ()
    console_url: str | None = None


class OwningTeam(_Model):
    """Who to contact, and where that came from (``namespace label``, ``namespace annotation``, ``cluster label``)."""

    value: str
    key: str
    source: str


class ClusterSection(_Model):
    """Step 2: the cluster."""

    path: str
    project: str
    location: str
    name: str
    zonal: bool
    status: str | None = None
    version: str | None = None
    autopilot: bool | None = None
    network_policy_enforced: bool | None = None
    datapath_provider: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    console_url: str
    enrichment: str


class NodeSection(_Model):
    """Step 2: the node the pod ran on."""

    name: str | None = None
    instance_id: str | None = None
    node_pool: str | None = None
    zone: str | None = None
    console_url: str | None = None
    vm_url: str | None = None
    enrichment: str


class ContainerInfo(_Model):
    """One container of the pod."""

    name: str
    image: str | None = None
    image_id: str | None = None
    running: bool = False
    ready: bool | None = None
    restarts: int = 0
    privileged: bool = False
    run_as_user: int | None = None
    allow_privilege_escalation: bool | None = None


class WorkloadInfo(_Model):
    """One link of the owner chain."""

    kind: str
    name: str
    replicas: int | None = None
    ready_replicas: int | None = None
    console_url: str | None = None


class PodSection(_Model):
    """Step 3: the pod and its owners; live facts when the cluster was reachable, else the finding's."""

    namespace: str
    name: str
    source: Literal["cluster", "finding"]
    uid: str | None = None
    phase: str | None = None
    node: str | None = None
    service_account: str | None = None
    # Its Google identity, where Workload Identity gives it one (the service account's iam.gke.io annotation).
    google_service_account: str | None = None
    start_time: datetime | None = None
    host_network: bool | None = None
    host_pid: bool | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    containers: tuple[ContainerInfo, ...] = ()
    owner_chain: tuple[WorkloadInfo, ...] = ()
    console_url: str
    enrichment: str


class RuleInfo(_Model):
    """One rule of a bound role: its verbs on its targets (``configmaps``, ``deployments.apps``, ``URL /metrics``)."""

    verbs: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    writes: bool = False  # a write verb, or any verb on exec, attach or port-forward


class BindingInfo(_Model):
    """A RoleBinding or ClusterRoleBinding that names the pod's service account, and its role's rules."""

    kind: str
    namespace: str | None = None
    name: str
    role_kind: str
    role_name: str
    subject: str  # how it names the account
    direct: bool
    role_found: bool = True
    rules: tuple[RuleInfo, ...] = ()
    rules_truncated: int = 0


class IdentitySection(_Model):
    """The pod's identity: who its stolen token is, what RBAC lets it do, which tokens the guard cannot see, and
    whether its writes are refused now."""

    namespace: str
    service_account: str
    username: str  # system:serviceaccount:NS:SA, what its tokens authenticate as
    google_identity: str
    google_identity_source: Literal["annotation", "principal"]
    google_identity_note: str
    rights_status: str  # the rights branch: ok, or why the bindings are not listed
    bindings: tuple[BindingInfo, ...] = ()
    bindings_truncated: int = 0
    defaults_skipped: int = 0
    can_write: tuple[str, ...] = ()
    can_read: tuple[str, ...] = ()
    writes_refused: bool = False
    writes_note: str
    account_read: bool = False  # the ServiceAccount object was read: ``secret_tokens`` and ``automount_token`` hold
    automount_token: bool | None = None
    secret_tokens: tuple[str, ...] = ()
    secrets_command: str


class LogLine(_Model):
    """One log entry, bounded."""

    timestamp: datetime | None = None
    severity: str | None = None
    text: str


class LogSection(_Model):
    """Step 4: one search: the filter verbatim, where to run it, and what it found (or why not)."""

    kind: LogKind
    title: str
    filter: str | None = None
    template: str | None = None  # when the filter needs a value only a human can look up now (the instance ID)
    explorer_url: str | None = None
    status: str
    detail: str | None = None
    limit: int
    entries: tuple[LogLine, ...] = ()


class LogsSection(_Model):
    """Step 4: the window and the searches, plus the log tail captured from the pod."""

    window_start: datetime | None = None
    window_end: datetime | None = None
    window_note: str | None = None
    searches: tuple[LogSection, ...] = ()
    captured_tail: str | None = None


class CommandInfo(_Model):
    """A command for the human (never run by the responder)."""

    purpose: str
    text: str


class InspectSection(_Model):
    """Step 5: the commands filled in, and the process tree captured before containment."""

    commands: tuple[CommandInfo, ...] = ()
    process_tree: str | None = None
    process_tree_note: str
    sockets: tuple[dict[str, str | int], ...] | None = None  # the container's TCP sockets at capture time
    connection: dict[str, Any] | None = None  # the finding's connection among them: matched, open, why
    evidence_notes: tuple[str, ...] = ()


class ActionInfo(_Model):
    """One action's result."""

    action: str
    status: str
    reason: str
    dry_run: bool = False
    changes: tuple[str, ...] = ()


class ResponseSection(_Model):
    """Step 7: what the policy planned, what ran, and what is left for a human."""

    mode: str | None = None
    dry_run: bool = True
    rule: str | None = None
    planned: tuple[str, ...] = ()
    actions: tuple[ActionInfo, ...] = ()
    writebacks: tuple[ActionInfo, ...] = ()  # what was told SCC (security marks, INACTIVE)
    skipped: tuple[str, ...] = ()
    todo: tuple[str, ...] = ()


class IncidentReport(_Model):
    """The whole report. ``finding`` onwards is None for an ignore/reject outcome, except what could be read."""

    schema_version: int = SCHEMA_VERSION
    generated_at: datetime
    title: str
    verdict: str
    code: str
    reason: str
    outcome: str = "done"
    owner: str | None = None
    owner_info: OwningTeam | None = None
    finding: FindingSection | None = None
    cluster: ClusterSection | None = None
    node: NodeSection | None = None
    pod: PodSection | None = None
    identity: IdentitySection | None = None
    logs: LogsSection | None = None
    inspect: InspectSection | None = None
    mitre: tuple[links.Technique, ...] = ()
    virustotal: tuple[links.Link, ...] = ()
    console: tuple[links.Link, ...] = ()
    response: ResponseSection | None = None
    enrichment: dict[str, str] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------------ building
