"""The runbook's Cloud Logging filters: exact text, time window, and quoting that no identifier can escape."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from responder.errors import InvalidIdentifier
from responder.intake.identifiers import ClusterRef
from responder.intake.triage import Target, triage
from responder.investigation import logfilters
from tests.support.google_fakes import parse_log_filter
from tests.unit.sample_world import EVENT_TIME, REGIONAL, ZONAL, make_target, sample_finding, sample_target

WINDOW = logfilters.log_window(EVENT_TIME, 30)
BOUNDS = 'timestamp>="2026-03-14T08:56:53Z" AND timestamp<="2026-03-14T09:56:54Z"'


def _outside_quotes(filter_: str) -> str:
    """The filter with every quoted string removed: what the query language parses as syntax."""
    return re.sub(r'"[^"\\]*"', '""', filter_)


# ----------------------------------------------------------------------------------------------------- window


def test_window_is_event_time_plus_minus_minutes_widened_to_whole_seconds() -> None:
    assert WINDOW.start == datetime(2026, 3, 14, 8, 56, 53, tzinfo=UTC)
    assert WINDOW.end == datetime(2026, 3, 14, 9, 56, 54, tzinfo=UTC)
    assert WINDOW.anchor == "event_time"
    assert WINDOW.clause == BOUNDS
    assert "eventTime ± 30 min" in WINDOW.note


def test_window_without_event_time_falls_back_to_now_and_says_so() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    window = logfilters.log_window(None, 15, now=now)
    assert window.anchor == "now"
    assert (window.start, window.end) == (now - timedelta(minutes=15), now)
    assert "no eventTime" in window.note
    assert window.clause == 'timestamp>="2026-05-01T11:45:00Z" AND timestamp<="2026-05-01T12:00:00Z"'


def test_window_treats_naive_times_as_utc_and_converts_other_zones() -> None:
    naive = logfilters.log_window(datetime(2026, 3, 14, 9, 0), 1)
    tokyo = logfilters.log_window(datetime(2026, 3, 14, 18, 0, tzinfo=timezone(timedelta(hours=9))), 1)
    expected = 'timestamp>="2026-03-14T08:59:00Z" AND timestamp<="2026-03-14T09:01:00Z"'
    assert naive.clause == expected
    assert tokyo.clause == expected
    with pytest.raises(ValueError, match="at least one minute"):
        logfilters.log_window(EVENT_TIME, 0)


def test_window_from_sample_event_time_contains_the_event() -> None:
    finding = sample_finding()
    window = logfilters.log_window(finding.event_time, 30)
    assert finding.event_time is not None
    assert window.start <= finding.event_time <= window.end


# ---------------------------------------------------------------------------------------------------- filters


def test_container_filter_regional_cluster_exact() -> None:
    assert logfilters.container_filter(sample_target("reverse_shell_v1.json"), WINDOW) == (
        'resource.type="k8s_container" AND resource.labels.project_id="example-retail-prod" AND '
        'resource.labels.location="us-east1" AND resource.labels.cluster_name="retail-gke" AND '
        'resource.labels.namespace_name="storefront" AND resource.labels.pod_name="cart-api-5c8d7b9f4-q7w2z" AND '
        f'resource.labels.container_name="api" AND {BOUNDS}'
    )


def test_container_filter_zonal_cluster_exact() -> None:
    assert logfilters.container_filter(sample_target("reverse_shell_v2.json"), WINDOW) == (
        'resource.type="k8s_container" AND resource.labels.project_id="example-bank-prod" AND '
        'resource.labels.location="asia-northeast1-a" AND resource.labels.cluster_name="ledger-gke" AND '
        'resource.labels.namespace_name="banking" AND resource.labels.pod_name="settlement-0" AND '
        f'resource.labels.container_name="worker" AND {BOUNDS}'
    )


def test_container_filter_without_container_name_omits_that_clause() -> None:
    flt = logfilters.container_filter(make_target(container=None), WINDOW)
    assert "container_name" not in flt
    assert flt.endswith(f'resource.labels.pod_name="cart-api-5c8d7b9f4-q7w2z" AND {BOUNDS}')


def test_audit_filter_exact_for_zonal_cluster() -> None:
    pod = "core/v1/namespaces/banking/pods/settlement-0"
    subs = ["", *(f"/{s}" for s in logfilters.POD_SUBRESOURCES)]
    names = " OR ".join(f'protoPayload.resourceName="{pod}{s}"' for s in subs)
    assert logfilters.audit_filter(sample_target("reverse_shell_v2.json"), WINDOW) == (
        'resource.type="k8s_cluster" AND resource.labels.project_id="example-bank-prod" AND '
        'resource.labels.location="asia-northeast1-a" AND resource.labels.cluster_name="ledger-gke" AND '
        f'log_id("cloudaudit.googleapis.com/activity") AND ({names}) AND {BOUNDS}'
    )


def test_audit_filter_matches_exec_exactly_and_never_by_substring() -> None:
    flt = logfilters.audit_filter(make_target(pod="web-1"), WINDOW)
    assert 'protoPayload.resourceName="core/v1/namespaces/storefront/pods/web-1/exec"' in flt
    assert 'protoPayload.resourceName="core/v1/namespaces/storefront/pods/web-1"' in flt
    assert "protoPayload.resourceName:" not in flt  # `:` would also match web-10 … web-19
    assert len(flt) < 20_000


# ------------------------------------------------------------------------- the writes made with the pod's identity
SINCE = logfilters.since_event(WINDOW, EVENT_TIME, EVENT_TIME + timedelta(hours=2, microseconds=1))
AUDIT_LOG_NAME = "projects/example-retail-prod/logs/cloudaudit.googleapis.com%2Factivity"


def test_identity_writes_filter_exact_from_the_event_to_the_search() -> None:
    target = sample_target()
    c = target.cluster
    assert SINCE.clause == 'timestamp>="2026-03-14T09:26:53Z" AND timestamp<="2026-03-14T11:26:54Z"'
    assert logfilters.identity_writes_filter(target, "storefront", "cart-api", SINCE) == (
        f'resource.type="k8s_cluster" AND resource.labels.project_id="{c.project}" AND '
        f'resource.labels.location="{c.location}" AND resource.labels.cluster_name="{c.name}" AND '
        'log_id("cloudaudit.googleapis.com/activity") AND '
        'protoPayload.authenticationInfo.principalEmail="system:serviceaccount:storefront:cart-api" AND '
        f"{SINCE.clause}"
    )


def _audit_entry(principal: str, minutes_after_event: int) -> dict[str, object]:
    c = sample_target().cluster
    return {
        "logName": AUDIT_LOG_NAME,
        "resource": {
            "type": "k8s_cluster",
            "labels": {"project_id": c.project, "location": c.location, "cluster_name": c.name},
        },
        "timestamp": (EVENT_TIME + timedelta(minutes=minutes_after_event)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "protoPayload": {
            "authenticationInfo": {"principalEmail": principal},
            "methodName": "io.k8s.core.v1.configmaps.create",
        },
    }


def test_identity_writes_filter_finds_that_accounts_writes_after_the_event_and_nothing_else() -> None:
    """Evaluated by the Logging fake's query-language evaluator (the one its entries.list serves with)."""
    matches = parse_log_filter(logfilters.identity_writes_filter(sample_target(), "storefront", "cart-api", SINCE))
    ours = "system:serviceaccount:storefront:cart-api"
    assert matches(_audit_entry(ours, 5))
    assert not matches(_audit_entry("system:serviceaccount:storefront:cart-api-admin", 5))  # a prefix is not it
    assert not matches(_audit_entry("system:serviceaccount:billing:cart-api", 5))  # same name, another namespace
    assert not matches(_audit_entry(ours, -1))  # before the event: not the stolen token's doing
    data_access = {**_audit_entry(ours, 5), "logName": AUDIT_LOG_NAME.replace("activity", "data_access")}
    assert not matches(data_access)


@pytest.mark.parametrize("account", ["", "Cart", 'x" OR "y', "a\nb", "a:b", "a" * 254])
def test_identity_writes_filter_refuses_an_account_that_is_not_a_service_account_name(account: str) -> None:
    with pytest.raises(InvalidIdentifier):
        logfilters.identity_writes_filter(sample_target(), "storefront", account, SINCE)


def test_serial_console_filter_exact() -> None:
    assert logfilters.serial_console_filter("4412896150022334455", WINDOW) == (
        'resource.type="gce_instance" AND log_id("serialconsole.googleapis.com/serial_port_1_output") AND '
        f'resource.labels.instance_id="4412896150022334455" AND {BOUNDS}'
    )


@pytest.mark.parametrize("bad", ["", "gke-node-1", "12 34", '1" OR "2', "1\n2", "1" * 21])
def test_serial_console_filter_rejects_non_numeric_instance_ids(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        logfilters.serial_console_filter(bad, WINDOW)


def test_serial_console_template_has_a_placeholder_and_the_window() -> None:
    template = logfilters.serial_console_template(WINDOW)
    assert 'resource.labels.instance_id="<INSTANCE_ID>"' in template
    assert template.endswith(BOUNDS)


def test_every_filter_carries_its_own_time_window() -> None:
    target = sample_target()
    for flt in (
        logfilters.container_filter(target, WINDOW),
        logfilters.audit_filter(target, WINDOW),
        logfilters.serial_console_filter("1", WINDOW),
    ):
        assert flt.endswith(f" AND {BOUNDS}")
        assert _outside_quotes(flt).count("timestamp>=") == 1
        assert _outside_quotes(flt).count("timestamp<=") == 1


# ------------------------------------------------------------------------------------------ tricky identifiers


TRICKY = [
    # pod names and namespaces that are valid Kubernetes names but look like filter syntax
    make_target(namespace="and", pod="timestamp-or-and", container="or"),
    make_target(namespace="not", pod="a.b.c", container="timestamp"),
    make_target(namespace="or", pod="timestamp", container=None),
    make_target(
        cluster=ClusterRef(project="timestamp-and-or", location="us-east1", name="and-or-not"),
        namespace="log-id",
        pod="resource.type",
    ),
]


SYNTAX = {
    "resource.type",
    "resource.labels.project_id",
    "resource.labels.location",
    "resource.labels.cluster_name",
    "resource.labels.namespace_name",
    "resource.labels.pod_name",
    "resource.labels.container_name",
    "protoPayload.resourceName",
    "log_id",
    "timestamp",
    "AND",
    "OR",
    "(",
    ")",
    "=",
    ">=",
    "<=",
    '""',
}


@pytest.mark.parametrize("target", TRICKY, ids=lambda t: f"{t.namespace}/{t.pod}")
def test_valid_but_tricky_identifiers_cannot_change_a_filters_meaning(target: Target) -> None:
    plain = make_target(namespace="ns", pod="pod", container="ctr" if target.container else None)
    for build in (logfilters.container_filter, logfilters.audit_filter):
        flt = build(target, WINDOW)
        syntax = _outside_quotes(flt)
        # With every quoted string blanked, the filter is token for token the one a boring pod name gives: the
        # identifiers ("and", "timestamp-or-and", "a.b.c") stayed inside their quotes and added no syntax.
        assert syntax == _outside_quotes(build(plain, WINDOW))
        assert set(re.findall(r'""|[A-Za-z_.]+|[()]|>=|<=|=', syntax)) <= SYNTAX
        # Exactly one lower and one upper time bound, and they are ours.
        assert syntax.count("timestamp>=") == 1
        assert syntax.count("timestamp<=") == 1
        assert flt.endswith(BOUNDS)
        assert f'"{target.pod}"' in flt or f'/pods/{target.pod}"' in flt


def test_tricky_identifiers_pass_triage_validation() -> None:
    # The point of the test above: these names are *valid*, so triage lets them through to the filter builder.
    from responder.intake import identifiers

    for target in TRICKY:
        assert identifiers.namespace(target.namespace) == target.namespace
        assert identifiers.pod_name(target.pod) == target.pod


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", 'ns" OR "x'),
        ("pod", 'p" OR timestamp>="1970'),
        ("pod", "p\\"),
        ("pod", "p\nq"),
        ("container", "c\x00"),
        ("namespace", "ns\u2028"),
        ("pod", ""),
    ],
)
def test_values_that_could_leave_the_quotes_are_rejected_not_escaped(field: str, value: str) -> None:
    # Triage would never produce these; the builder still refuses them (defence in depth).
    kwargs = {"namespace": "ns", "pod": "pod", "container": "c", field: value}
    target = make_target(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentifier):
        logfilters.container_filter(target, WINDOW)
    if field != "container":
        with pytest.raises(InvalidIdentifier):
            logfilters.audit_filter(target, WINDOW)


def test_quote() -> None:
    assert logfilters.quote("a.b-c") == '"a.b-c"'
    for bad in ['a"b', "a\\b", "a\tb", "\x7f"]:
        with pytest.raises(InvalidIdentifier):
            logfilters.quote(bad)


def test_triage_rejects_a_quote_in_a_finding_before_any_filter_is_built() -> None:
    finding = sample_finding().model_copy(update={"pod_name": 'x" OR "y'})
    assert triage(finding).verdict.value == "reject"


def test_zonal_and_regional_refs() -> None:
    assert ZONAL.zonal
    assert not REGIONAL.zonal
