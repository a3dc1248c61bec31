"""Links and filled-in commands: exact text, --zone versus --region, quoting, and MITRE/VirusTotal mapping."""

from __future__ import annotations

import shlex
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from responder.errors import InvalidIdentifier
from responder.intake.categories import ADDED_BINARY_EXECUTED, REVERSE_SHELL
from responder.intake.findings import Mitre, Process
from responder.investigation import links, logfilters
from tests.unit.sample_world import EVENT_TIME, REGIONAL, ZONAL, make_target, sample_target

SHA = "9f2c4b7a1e0d3c5b8a6f4e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a697881"


# ---------------------------------------------------------------------------------------------------- commands


def test_get_credentials_regional_cluster_uses_region() -> None:
    assert links.get_credentials(REGIONAL).text == (
        "gcloud container clusters get-credentials retail-gke --region us-east1 --project example-retail-prod"
    )


def test_get_credentials_zonal_cluster_uses_zone() -> None:
    assert links.get_credentials(ZONAL).text == (
        "gcloud container clusters get-credentials ledger-gke --zone asia-northeast1-a --project example-bank-prod"
    )


def test_samples_give_the_runbook_commands() -> None:
    v1 = [c.text for c in links.runbook_commands(sample_target("reverse_shell_v1.json"))]
    v2 = [c.text for c in links.runbook_commands(sample_target("reverse_shell_v2.json"))]
    assert v1 == [
        "gcloud container clusters get-credentials retail-gke --region us-east1 --project example-retail-prod",
        "kubectl exec --namespace=storefront -ti cart-api-5c8d7b9f4-q7w2z -c api -- /bin/sh",
        "ps axjf",
    ]
    assert v2[0] == (
        "gcloud container clusters get-credentials ledger-gke --zone asia-northeast1-a --project example-bank-prod"
    )
    assert v2[1] == "kubectl exec --namespace=banking -ti settlement-0 -c worker -- /bin/sh"


def test_kubectl_exec_without_container_omits_dash_c() -> None:
    cmd = links.kubectl_exec(make_target(container=None))
    assert cmd.text == "kubectl exec --namespace=storefront -ti cart-api-5c8d7b9f4-q7w2z -- /bin/sh"
    assert "-c" not in cmd.argv


def test_commands_quote_every_argument() -> None:
    # Triage never lets such a value through; if one ever did, it would stay one inert shell word.
    target = make_target(namespace="ns; rm -rf /", pod="$(id)", container="`x`")
    cmd = links.kubectl_exec(target)
    assert shlex.split(cmd.text) == list(cmd.argv)
    assert "'--namespace=ns; rm -rf /'" in cmd.text
    assert "'$(id)'" in cmd.text


def test_node_instance_id_and_delete_commands() -> None:
    target = sample_target()
    node_cmd = links.node_instance_id("gke-retail-gke-default-pool-3f9c1a2b-x7kq")
    assert shlex.split(node_cmd.text)[-1] == f"jsonpath={links.INSTANCE_ID_JSONPATH}"
    assert links.delete_pod(target).text == "kubectl delete pod --namespace=storefront cart-api-5c8d7b9f4-q7w2z"
    assert links.describe_pod(target).text == "kubectl get pod --namespace=storefront cart-api-5c8d7b9f4-q7w2z -o yaml"


# -------------------------------------------------------------------------------------------------- VirusTotal


def test_virustotal_url_validates_and_lowercases() -> None:
    assert links.virustotal_url(SHA.upper()) == f"https://www.virustotal.com/gui/file/{SHA}"
    for bad in ["", "abc", SHA + "0", SHA[:-1] + "g", "../" + SHA[3:]]:
        with pytest.raises(InvalidIdentifier):
            links.virustotal_url(bad)


def test_virustotal_links_one_per_distinct_valid_digest() -> None:
    processes = [
        Process(name="bash", binary_path="/bin/bash", sha256=SHA),
        Process(name="bash", binary_path="/bin/bash", sha256=SHA.upper()),
        Process(name="x", binary_path="/x", sha256="not-a-digest"),
        Process(name="y"),
    ]
    found = links.virustotal_links(processes)
    assert [link.url for link in found] == [f"https://www.virustotal.com/gui/file/{SHA}"]


# ------------------------------------------------------------------------------------------------------- MITRE


def test_attack_urls() -> None:
    assert links.attack_url("T1059") == "https://attack.mitre.org/techniques/T1059/"
    assert links.attack_url("T1059.004") == "https://attack.mitre.org/techniques/T1059/004/"
    assert links.attack_url("TA0011") == "https://attack.mitre.org/tactics/TA0011/"
    with pytest.raises(InvalidIdentifier):
        links.attack_url("T1059/../../x")


def test_scc_names_map_to_attack_ids() -> None:
    assert links.resolve_attack("COMMAND_AND_SCRIPTING_INTERPRETER") == ("T1059", "Command and Scripting Interpreter")
    assert links.resolve_attack("UNIX_SHELL")[0] == "T1059.004"  # type: ignore[index]
    assert links.resolve_attack("INGRESS_TOOL_TRANSFER")[0] == "T1105"  # type: ignore[index]
    assert links.resolve_attack("NATIVE_API")[0] == "T1106"  # type: ignore[index]
    assert links.resolve_attack("EXECUTION")[0] == "TA0002"  # type: ignore[index]
    assert links.resolve_attack("COMMAND_AND_CONTROL")[0] == "TA0011"  # type: ignore[index]
    assert links.resolve_attack("T1611") == ("T1611", None)
    assert links.resolve_attack("SOMETHING_NEW") is None


def test_attack_techniques_always_include_the_runbooks_and_list_unknown_names_without_link() -> None:
    techniques = links.attack_techniques(
        Mitre(tactics=("EXECUTION",), techniques=("UNIX_SHELL", "COMMAND_AND_SCRIPTING_INTERPRETER", "NEW_THING")),
        REVERSE_SHELL.techniques,
    )
    by_id = {t.attack_id: t for t in techniques}
    assert list(by_id) == ["TA0002", "T1059.004", "T1059", None, "T1105"]
    assert by_id["T1059"].source == "finding"
    assert by_id["T1105"].source == "runbook"
    assert by_id["T1105"].url == "https://attack.mitre.org/techniques/T1105/"
    unknown = by_id[None]
    assert (unknown.name, unknown.url) == ("NEW_THING", None)


def test_attack_techniques_for_an_empty_finding_are_the_runbooks() -> None:
    assert [t.attack_id for t in links.attack_techniques(Mitre(), REVERSE_SHELL.techniques)] == ["T1059", "T1105"]
    assert [t.attack_id for t in links.attack_techniques(Mitre(), ADDED_BINARY_EXECUTED.techniques)] == [
        "T1105",
        "T1106",
    ]


# ----------------------------------------------------------------------------------------------------- console


def test_console_links() -> None:
    target = sample_target("reverse_shell_v1.json")
    assert links.cluster_url(target.cluster) == (
        "https://console.cloud.google.com/kubernetes/clusters/details/us-east1/retail-gke/details"
        "?project=example-retail-prod"
    )
    assert links.pod_url(target) == (
        "https://console.cloud.google.com/kubernetes/pod/us-east1/retail-gke/storefront/cart-api-5c8d7b9f4-q7w2z"
        "/details?project=example-retail-prod"
    )
    assert links.workload_url(target.cluster, "storefront", "Deployment", "cart-api") == (
        "https://console.cloud.google.com/kubernetes/deployment/us-east1/retail-gke/storefront/cart-api/overview"
        "?project=example-retail-prod"
    )
    assert links.workload_url(target.cluster, "storefront", "Pod", "x") is None
    assert links.node_url(target.cluster, "n1").startswith(
        "https://console.cloud.google.com/kubernetes/node/us-east1/retail-gke/n1/"
    )
    assert links.vm_url(target.cluster, "us-east1-b", "n1") == (
        "https://console.cloud.google.com/compute/instancesDetail/zones/us-east1-b/instances/n1"
        "?project=example-retail-prod"
    )


def test_logs_explorer_url_round_trips_the_filter() -> None:
    target = sample_target()
    flt = logfilters.audit_filter(target, logfilters.log_window(EVENT_TIME, 30))
    url = links.logs_explorer_url(target.cluster.project, flt)
    parts = urlsplit(url)
    assert parts.path.startswith("/logs/query;query=")
    assert unquote(parts.path.removeprefix("/logs/query;query=")) == flt
    assert parse_qs(parts.query) == {"project": ["example-retail-prod"]}
    for char in ' "=()/?;#&':
        assert char not in parts.path.removeprefix("/logs/query;query=")


def test_finding_url() -> None:
    name = "organizations/987654321012/sources/11223311223344556600/locations/global/findings/0a9b8c7d6e5f"
    assert links.finding_url(name, "example-bank-prod") == (
        "https://console.cloud.google.com/security/command-center/findingsv2;name="
        "organizations%2F987654321012%2Fsources%2F11223311223344556600%2Flocations%2Fglobal%2Ffindings%2F0a9b8c7d6e5f"
        "?project=example-bank-prod"
    )
    assert links.finding_url(None, "p") is None
    assert links.finding_url("organizations/1/sources/2/findings/x?y=z", "p") is None
