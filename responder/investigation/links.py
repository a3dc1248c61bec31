"""Links and commands for the incident report (runbook steps 1, 4, 5 and 6).

Everything here is derived from the finding and the validated :class:`~responder.intake.triage.Target`, so it is
available without any cloud access. URL path segments and query values are percent-encoded even though they were
validated, and commands are built argument by argument with :func:`shlex.quote`: they are shown to humans, who copy
and paste them.
The responder never runs them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict

from responder.errors import InvalidIdentifier
from responder.intake import identifiers
from responder.intake.findings import Mitre, Process
from responder.intake.identifiers import ClusterRef
from responder.intake.triage import Target

CONSOLE = "https://console.cloud.google.com"
VIRUSTOTAL = "https://www.virustotal.com/gui/file/"
ATTACK = "https://attack.mitre.org"
INSTANCE_ID_JSONPATH = r"{.metadata.annotations.container\.googleapis\.com/instance_id}"

# SCC's MitreAttack enum names (securitycenter v1/v2 mitre_attack.proto) -> ATT&CK IDs and titles.
TACTICS: dict[str, tuple[str, str]] = {
    "RECONNAISSANCE": ("TA0043", "Reconnaissance"),
    "RESOURCE_DEVELOPMENT": ("TA0042", "Resource Development"),
    "INITIAL_ACCESS": ("TA0001", "Initial Access"),
    "EXECUTION": ("TA0002", "Execution"),
    "PERSISTENCE": ("TA0003", "Persistence"),
    "PRIVILEGE_ESCALATION": ("TA0004", "Privilege Escalation"),
    "DEFENSE_EVASION": ("TA0005", "Defense Evasion"),
    "CREDENTIAL_ACCESS": ("TA0006", "Credential Access"),
    "DISCOVERY": ("TA0007", "Discovery"),
    "LATERAL_MOVEMENT": ("TA0008", "Lateral Movement"),
    "COLLECTION": ("TA0009", "Collection"),
    "COMMAND_AND_CONTROL": ("TA0011", "Command and Control"),
    "EXFILTRATION": ("TA0010", "Exfiltration"),
    "IMPACT": ("TA0040", "Impact"),
}
TECHNIQUES: dict[str, tuple[str, str]] = {
    "MASQUERADING": ("T1036", "Masquerading"),
    "MATCH_LEGITIMATE_NAME_OR_LOCATION": ("T1036.005", "Match Legitimate Name or Location"),
    "BOOT_OR_LOGON_INITIALIZATION_SCRIPTS": ("T1037", "Boot or Logon Initialization Scripts"),
    "STARTUP_ITEMS": ("T1037.005", "Startup Items"),
    "NETWORK_SERVICE_DISCOVERY": ("T1046", "Network Service Discovery"),
    "PROCESS_DISCOVERY": ("T1057", "Process Discovery"),
    "COMMAND_AND_SCRIPTING_INTERPRETER": ("T1059", "Command and Scripting Interpreter"),
    "UNIX_SHELL": ("T1059.004", "Command and Scripting Interpreter: Unix Shell"),
    "PYTHON": ("T1059.006", "Command and Scripting Interpreter: Python"),
    "PERMISSION_GROUPS_DISCOVERY": ("T1069", "Permission Groups Discovery"),
    "CLOUD_GROUPS": ("T1069.003", "Permission Groups Discovery: Cloud Groups"),
    "APPLICATION_LAYER_PROTOCOL": ("T1071", "Application Layer Protocol"),
    "DNS": ("T1071.004", "Application Layer Protocol: DNS"),
    "SOFTWARE_DEPLOYMENT_TOOLS": ("T1072", "Software Deployment Tools"),
    "VALID_ACCOUNTS": ("T1078", "Valid Accounts"),
    "DEFAULT_ACCOUNTS": ("T1078.001", "Valid Accounts: Default Accounts"),
    "LOCAL_ACCOUNTS": ("T1078.003", "Valid Accounts: Local Accounts"),
    "CLOUD_ACCOUNTS": ("T1078.004", "Valid Accounts: Cloud Accounts"),
    "PROXY": ("T1090", "Proxy"),
    "EXTERNAL_PROXY": ("T1090.002", "Proxy: External Proxy"),
    "MULTI_HOP_PROXY": ("T1090.003", "Proxy: Multi-hop Proxy"),
    "ACCOUNT_MANIPULATION": ("T1098", "Account Manipulation"),
    "ADDITIONAL_CLOUD_CREDENTIALS": ("T1098.001", "Account Manipulation: Additional Cloud Credentials"),
    "SSH_AUTHORIZED_KEYS": ("T1098.004", "Account Manipulation: SSH Authorized Keys"),
    "ADDITIONAL_CONTAINER_CLUSTER_ROLES": ("T1098.006", "Account Manipulation: Additional Container Cluster Roles"),
    "INGRESS_TOOL_TRANSFER": ("T1105", "Ingress Tool Transfer"),
    "NATIVE_API": ("T1106", "Native API"),
    "BRUTE_FORCE": ("T1110", "Brute Force"),
    "SHARED_MODULES": ("T1129", "Shared Modules"),
    "ACCESS_TOKEN_MANIPULATION": ("T1134", "Access Token Manipulation"),
    "TOKEN_IMPERSONATION_OR_THEFT": ("T1134.001", "Access Token Manipulation: Token Impersonation/Theft"),
    "EXPLOIT_PUBLIC_FACING_APPLICATION": ("T1190", "Exploit Public-Facing Application"),
    "DOMAIN_POLICY_MODIFICATION": ("T1484", "Domain or Tenant Policy Modification"),
    "DATA_DESTRUCTION": ("T1485", "Data Destruction"),
    "SERVICE_STOP": ("T1489", "Service Stop"),
    "INHIBIT_SYSTEM_RECOVERY": ("T1490", "Inhibit System Recovery"),
    "RESOURCE_HIJACKING": ("T1496", "Resource Hijacking"),
    "NETWORK_DENIAL_OF_SERVICE": ("T1498", "Network Denial of Service"),
    "CLOUD_SERVICE_DISCOVERY": ("T1526", "Cloud Service Discovery"),
    "STEAL_APPLICATION_ACCESS_TOKEN": ("T1528", "Steal Application Access Token"),
    "ACCOUNT_ACCESS_REMOVAL": ("T1531", "Account Access Removal"),
    "STEAL_WEB_SESSION_COOKIE": ("T1539", "Steal Web Session Cookie"),
    "CREATE_OR_MODIFY_SYSTEM_PROCESS": ("T1543", "Create or Modify System Process"),
    "ABUSE_ELEVATION_CONTROL_MECHANISM": ("T1548", "Abuse Elevation Control Mechanism"),
    "UNSECURED_CREDENTIALS": ("T1552", "Unsecured Credentials"),
    "MODIFY_AUTHENTICATION_PROCESS": ("T1556", "Modify Authentication Process"),
    "IMPAIR_DEFENSES": ("T1562", "Impair Defenses"),
    "DISABLE_OR_MODIFY_TOOLS": ("T1562.001", "Impair Defenses: Disable or Modify Tools"),
    "EXFILTRATION_OVER_WEB_SERVICE": ("T1567", "Exfiltration Over Web Service"),
    "EXFILTRATION_TO_CLOUD_STORAGE": ("T1567.002", "Exfiltration Over Web Service: Exfiltration to Cloud Storage"),
    "DYNAMIC_RESOLUTION": ("T1568", "Dynamic Resolution"),
    "LATERAL_TOOL_TRANSFER": ("T1570", "Lateral Tool Transfer"),
    "MODIFY_CLOUD_COMPUTE_INFRASTRUCTURE": ("T1578", "Modify Cloud Compute Infrastructure"),
    "CREATE_SNAPSHOT": ("T1578.001", "Modify Cloud Compute Infrastructure: Create Snapshot"),
    "CLOUD_INFRASTRUCTURE_DISCOVERY": ("T1580", "Cloud Infrastructure Discovery"),
    "OBTAIN_CAPABILITIES": ("T1588", "Obtain Capabilities"),
    "ACTIVE_SCANNING": ("T1595", "Active Scanning"),
    "SCANNING_IP_BLOCKS": ("T1595.001", "Active Scanning: Scanning IP Blocks"),
    "CONTAINER_AND_RESOURCE_DISCOVERY": ("T1613", "Container and Resource Discovery"),
}
_BY_ID: dict[str, str] = dict((*TACTICS.values(), *TECHNIQUES.values()))
_ATTACK_ID = re.compile(r"(TA[0-9]{4})|(T[0-9]{4})(?:\.([0-9]{3}))?")
_FINDING_NAME = re.compile(
    r"(organizations|folders|projects)/[a-z0-9-]{1,63}/sources/[0-9]{1,30}(/locations/[a-z0-9-]{1,63})?"
    r"/findings/[A-Za-z0-9_-]{1,128}"
)


class Link(BaseModel):
    """A titled URL; ``url`` is None for a reference we can name but not link (an unknown MITRE name)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    title: str
    url: str | None = None


class Technique(BaseModel):
    """A MITRE ATT&CK tactic or technique as the report lists it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str  # as SCC reported it (enum name), or the ATT&CK ID for the runbook's defaults
    attack_id: str | None = None
    title: str | None = None
    url: str | None = None
    source: str  # "finding" or "runbook"


class Command(BaseModel):
    """A shell command for a human: the argv and its quoted one-line form."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    purpose: str
    argv: tuple[str, ...]

    @property
    def text(self) -> str:
        """The argv joined with :func:`shlex.quote` on each argument."""
        return shlex.join(self.argv)


# ----------------------------------------------------------------------------------------------------- VirusTotal


def virustotal_url(sha256: str) -> str:
    """``https://www.virustotal.com/gui/file/<sha256>``; raises :class:`InvalidIdentifier` for a non-digest."""
    return VIRUSTOTAL + identifiers.sha256(sha256)


def virustotal_links(processes: Iterable[Process]) -> list[Link]:
    """One VirusTotal link per distinct binary SHA-256 in the finding; malformed digests are left out."""
    links: dict[str, Link] = {}
    for process in processes:
        if not process.sha256:
            continue
        try:
            url = virustotal_url(process.sha256)
        except InvalidIdentifier:
            continue
        digest = url.rsplit("/", 1)[-1]
        binary = process.binary_path or process.name or "binary"
        links.setdefault(digest, Link(title=f"VirusTotal: {binary[:120]} ({digest[:12]}…)", url=url))
    return list(links.values())


# ----------------------------------------------------------------------------------------------------------- MITRE


def attack_url(attack_id: str) -> str:
    """The ATT&CK page of a tactic (``TA0002``), technique (``T1059``) or sub-technique (``T1059.004``)."""
    match = _ATTACK_ID.fullmatch(attack_id)
    if not match:
        raise InvalidIdentifier(f"{attack_id[:20]!r} is not a MITRE ATT&CK ID")
    tactic, technique, sub = match.groups()
    if tactic:
        return f"{ATTACK}/tactics/{tactic}/"
    return f"{ATTACK}/techniques/{technique}/{sub}/" if sub else f"{ATTACK}/techniques/{technique}/"


def resolve_attack(name: str) -> tuple[str, str | None] | None:
    """``(id, title)`` for an SCC enum name or a literal ATT&CK ID; None when unknown."""
    key = name.strip().upper().replace(" ", "_").replace("-", "_")
    if key in TECHNIQUES:
        return TECHNIQUES[key]
    if key in TACTICS:
        return TACTICS[key]
    if _ATTACK_ID.fullmatch(key):
        return key, _BY_ID.get(key)
    return None


def attack_techniques(mitre: Mitre, runbook: Iterable[str] = ()) -> list[Technique]:
    """The finding's tactics and techniques, then the runbook's (its category profile's ATT&CK IDs, e.g. T1059 and
    T1105 for a reverse shell) when not already there.

    Names the table does not know (a newer SCC enum value) are listed without a link rather than dropped.
    """
    out: list[Technique] = []
    seen: set[str] = set()
    for raw in (*mitre.tactics, *mitre.techniques):
        name = raw[:80]
        resolved = resolve_attack(name)
        if resolved is None:
            if name not in seen:
                seen.add(name)
                out.append(Technique(name=name, source="finding"))
            continue
        attack_id, title = resolved
        if attack_id in seen:
            continue
        seen.add(attack_id)
        out.append(Technique(name=name, attack_id=attack_id, title=title, url=attack_url(attack_id), source="finding"))
    for attack_id in runbook:
        if attack_id not in seen:
            seen.add(attack_id)
            out.append(
                Technique(
                    name=attack_id,
                    attack_id=attack_id,
                    title=_BY_ID.get(attack_id),
                    url=attack_url(attack_id),
                    source="runbook",
                )
            )
    return out


# --------------------------------------------------------------------------------------------------------- console


def _seg(value: str) -> str:
    return quote(value, safe="")


def _project_query(cluster: ClusterRef) -> str:
    return urlencode({"project": cluster.project})


def cluster_url(cluster: ClusterRef) -> str:
    """The cluster's details page."""
    return (
        f"{CONSOLE}/kubernetes/clusters/details/{_seg(cluster.location)}/{_seg(cluster.name)}/details?"
        f"{_project_query(cluster)}"
    )


def pod_url(target: Target) -> str:
    """The pod's details page."""
    c = target.cluster
    return (
        f"{CONSOLE}/kubernetes/pod/{_seg(c.location)}/{_seg(c.name)}/{_seg(target.namespace)}/{_seg(target.pod)}"
        f"/details?{_project_query(c)}"
    )


_WORKLOAD_PAGES = {
    "Deployment": "deployment",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "Job": "job",
    "CronJob": "cronjob",
    "ReplicaSet": "replicaset",
}


def workload_url(cluster: ClusterRef, namespace: str, kind: str, name: str) -> str | None:
    """The workload's overview page, for the kinds the console has pages for; None otherwise."""
    page = _WORKLOAD_PAGES.get(kind)
    if page is None:
        return None
    return (
        f"{CONSOLE}/kubernetes/{page}/{_seg(cluster.location)}/{_seg(cluster.name)}/{_seg(namespace)}/{_seg(name)}"
        f"/overview?{_project_query(cluster)}"
    )


def node_url(cluster: ClusterRef, node: str) -> str:
    """The node's details page in the GKE console."""
    return (
        f"{CONSOLE}/kubernetes/node/{_seg(cluster.location)}/{_seg(cluster.name)}/{_seg(node)}/details?"
        f"{_project_query(cluster)}"
    )


def vm_url(cluster: ClusterRef, zone: str, node: str) -> str:
    """The node's Compute Engine VM (the serial console lives there too)."""
    return f"{CONSOLE}/compute/instancesDetail/zones/{_seg(zone)}/instances/{_seg(node)}?{_project_query(cluster)}"


def logs_explorer_url(project: str, filter_: str) -> str:
    """Logs Explorer with the filter pre-filled: ``/logs/query;query=<urlencoded>?project=P``."""
    return f"{CONSOLE}/logs/query;query={quote(filter_, safe='')}?{urlencode({'project': project})}"


def finding_url(finding_name: str | None, project: str) -> str | None:
    """The finding in the SCC console; None when the name is missing or not shaped like a finding name."""
    if not finding_name or not _FINDING_NAME.fullmatch(finding_name):
        return None
    return (
        f"{CONSOLE}/security/command-center/findingsv2;name={quote(finding_name, safe='')}?"
        f"{urlencode({'project': project})}"
    )


# -------------------------------------------------------------------------------------------------------- commands


def get_credentials(cluster: ClusterRef) -> Command:
    """``gcloud container clusters get-credentials C --zone|--region L --project P`` (zone for a zonal cluster)."""
    return Command(
        purpose="point kubectl at the cluster",
        argv=(
            "gcloud",
            "container",
            "clusters",
            "get-credentials",
            cluster.name,
            "--zone" if cluster.zonal else "--region",
            cluster.location,
            "--project",
            cluster.project,
        ),
    )


def kubectl_exec(target: Target, shell: str = "/bin/sh") -> Command:
    """``kubectl exec --namespace=NS -ti POD [-c CONTAINER] -- /bin/sh``."""
    argv: list[str] = ["kubectl", "exec", f"--namespace={target.namespace}", "-ti", target.pod]
    if target.container:
        argv += ["-c", target.container]
    argv += ["--", shell]
    return Command(purpose="open a shell in the compromised container", argv=tuple(argv))


def process_tree() -> Command:
    """``ps axjf``, run inside the container's shell."""
    return Command(purpose="list the process tree (inside the container)", argv=("ps", "axjf"))


def describe_pod(target: Target) -> Command:
    """``kubectl get pod --namespace=NS POD -o yaml``."""
    return Command(
        purpose="read the pod's manifest and status",
        argv=("kubectl", "get", "pod", f"--namespace={target.namespace}", target.pod, "-o", "yaml"),
    )


def delete_pod(target: Target) -> Command:
    """``kubectl delete pod --namespace=NS POD`` (its controller, if any, creates a replacement)."""
    return Command(
        purpose="once evidence is secured: delete the pod so its controller replaces it",
        argv=("kubectl", "delete", "pod", f"--namespace={target.namespace}", target.pod),
    )


def node_instance_id(node: str) -> Command:
    """Read the node's ``container.googleapis.com/instance_id`` annotation (the serial-console filter needs it)."""
    return Command(
        purpose="read the node's Compute Engine instance ID",
        argv=("kubectl", "get", "node", node, "-o", f"jsonpath={INSTANCE_ID_JSONPATH}"),
    )


def runbook_commands(target: Target) -> list[Command]:
    """Step 5's commands, filled in: credentials, shell into the container, process tree."""
    return [get_credentials(target.cluster), kubectl_exec(target), process_tree()]
