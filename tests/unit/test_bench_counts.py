"""The bench's counting (bench/redelivery.py, bench/report.py): what a redelivery figure counts is what it says.

SCC calls are attributed to a finding by its id in the request's path or its list filter, so two commits' workers and
the other findings in flight never count toward it; KubePort calls split into reads, writes and exec; a part run
alone (``python -m bench.run redelivery``) keeps the other figures of the last run and says which run measured what.
"""

from __future__ import annotations

from typing import Any

from bench.redelivery import kube_counts, scc_calls
from bench.report import results_of, with_previous
from bench.timing import Call
from tests.support.google_fakes import GoogleFake, RecordedRequest

PARENT = "/v1/organizations/1/sources/2/findings"


def _request(method: str, path: str, name_filter: str | None = None) -> RecordedRequest:
    query = {"filter": [f'name="organizations/1/sources/2/findings/{name_filter}"']} if name_filter else {}
    return RecordedRequest(method=method, path=path, query=query, body=None, headers={})


def test_scc_calls_are_counted_by_finding_and_kind() -> None:
    fake = GoogleFake()
    fake.requests = [
        _request("GET", PARENT, "abc123"),  # verification read of abc123
        _request("PATCH", f"{PARENT}/abc123/securityMarks"),
        _request("POST", f"{PARENT}/abc123:setState"),
        _request("GET", PARENT, "other9"),  # another finding's read
        _request("PATCH", f"{PARENT}/other9/securityMarks"),
        _request("GET", "/v1/projects/p/locations/l/clusters/c"),  # GKE, not SCC
    ]
    assert scc_calls(fake, "abc123") == {"reads": 1, "marks": 1, "state": 1}
    assert scc_calls(fake, "other9") == {"reads": 1, "marks": 1, "state": 0}
    assert scc_calls(fake, "nothing") == {"reads": 0, "marks": 0, "state": 0}


def test_kube_calls_split_into_reads_writes_and_exec() -> None:
    methods = [
        "get_pod",
        "list_network_policies",
        "read_log",
        "get_namespace",
        "create_network_policy",
        "set_network_policy_selector",
        "patch_pod_metadata",
        "delete_pod",
        "update_lease",
        "exec",
    ]
    calls = [Call(m, 0.0, 1.0, "ok") for m in methods]
    assert kube_counts(calls) == {"reads": 4, "writes": 5, "exec": 1}


def _results(figures: dict[str, Any]) -> dict[str, Any]:
    return results_of(figures, {"part": sorted(figures)}, 0.0, [0.0, 0.0, 0.0])


def test_a_part_run_alone_replaces_its_figures_and_names_each_run() -> None:
    previous = _results({"containment_L": 2.5, "redelivery_cpu_ms": 9.0, "full_event_cpu_ms": 30.0})
    part = _results({"redelivery_cpu_ms": 6.0, "full_event_cpu_ms": 30.0, "redelivery_cpu_ratio": 0.2})
    merged = with_previous(part, previous, "redelivery")
    assert merged["figures"] == {
        "containment_L": 2.5,
        "redelivery_cpu_ms": 6.0,
        "full_event_cpu_ms": 30.0,
        "redelivery_cpu_ratio": 0.2,
    }
    assert merged["runs"]["all"]["figures"] == ["containment_L"]
    assert merged["runs"]["redelivery"]["figures"] == ["full_event_cpu_ms", "redelivery_cpu_ms", "redelivery_cpu_ratio"]
    assert merged["ratios"]["redelivery_cpu_ms / full_event_cpu_ms"] == 0.2
    assert merged["targets"]["redelivery_cpu_ratio"]["met"] is False  # ≤ 0.1
    assert with_previous(part, None, "redelivery")["runs"]["redelivery"]["figures"] == sorted(part["figures"])
