"""The metrics, alerts and dashboard of terraform/monitoring.tf, against the records the responder really writes.

Every log filter and extractor of the module is run through the Logging wire fake's query evaluator
(``tests/support/google_fakes.parse_log_filter``) over decision records produced by real replays: ``python -m
responder replay`` in a subprocess (a rejected dead letter pulled from its subscription, a containment that cannot
reach its cluster, a dry run) and the responder on the in-memory cluster (a containment, its duplicate, a containment
whose writes fail), plus the terminal ``not_contained`` records built by ``make_record`` as the responder builds them.
Each record line is turned into the LogEntry Cloud Run makes of a JSON line on stdout, so a field renamed in
``responder/report/record.py`` or in a filter fails here.
"""

from __future__ import annotations

import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, get_args

import hcl2
import pytest

from responder.containment.results import ActionResult, Status
from responder.intake.envelope import Delivery
from responder.intake.triage import Verdict
from responder.report.record import PodRef, RecordOutcome, emit, fallback_line, make_record
from tests.notifications import dead_letter_pulled, notification
from tests.support.common import environ_without_settings, responder_cli
from tests.support.google_fakes import parse_log_filter
from tests.unit.fakes import FakeKube
from tests.unit.test_containment import FINDING, NS, POD, make

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"
VARS = {"name": "rs-responder", "project_id": "shop-sec-123"}
STDOUT_LOG = f"projects/{VARS['project_id']}/logs/run.googleapis.com%2Fstdout"

# --- the module's filters, rendered as Terraform would for VARS ---------------------------------------------------------


@cache
def _blocks(name: str) -> dict[str, Any]:
    with (TF_DIR / name).open() as f:
        return hcl2.load(
            f,
            serialization_options=hcl2.SerializationOptions(
                strip_string_quotes=True, explicit_blocks=False, with_comments=False
            ),
        )


@cache
def tf_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in ("locals.tf", "monitoring.tf"):
        for block in _blocks(name).get("locals", []):
            merged.update(block)
    return merged


def resource(rtype: str, name: str) -> dict[str, Any]:
    for block in _blocks("monitoring.tf")["resource"]:
        if rtype in block and name in block[rtype]:
            body: dict[str, Any] = block[rtype][name]
            return body
    raise AssertionError(f"no {rtype}.{name} in monitoring.tf")


_REF = re.compile(r"\$\{(var|local)\.([a-z_]+)(?:\.([a-z_]+))?\}")


def render(text: str) -> str:
    """Interpolate ``${var.x}``, ``${local.y}`` and ``${local.map.key}`` (all this module's filters use)."""

    def value(match: re.Match[str]) -> str:
        kind, name, key = match.groups()
        if kind == "var":
            return VARS[name]
        found = tf_locals()[name]
        return render(found[key] if key else found)

    rendered = _REF.sub(value, text)
    assert "${" not in rendered, rendered
    return rendered


def log_filter(local_name: str) -> str:
    return render(tf_locals()[local_name])


def extract(entry: dict[str, Any], extractor: str) -> Any:
    """What ``EXTRACT(path)`` takes from an entry (None when the path is absent)."""
    match = re.fullmatch(r"EXTRACT\(([A-Za-z_.]+)\)", extractor)
    assert match, extractor
    value: Any = entry
    for part in match.group(1).split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# --- records from real replays -------------------------------------------------------------------------------------------


def cloud_run_entry(line: str, service: str = VARS["name"]) -> dict[str, Any]:
    """The LogEntry Cloud Run writes for a JSON line on stdout: ``severity`` becomes the entry's severity (and leaves
    the payload); every other field stays in jsonPayload."""
    payload = json.loads(line)
    severity = payload.pop("severity", "DEFAULT")
    return {
        "logName": STDOUT_LOG,
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": VARS["project_id"],
                "service_name": service,
                "revision_name": f"{service}-00001-abc",
                "configuration_name": service,
                "location": "europe-west1",
            },
        },
        "severity": severity,
        "jsonPayload": payload,
        "timestamp": "2026-03-14T09:27:01.123456Z",
        "insertId": "abc123",
    }


def _clean_env(**extra: str) -> dict[str, str]:
    return {**environ_without_settings(), "RESPONDER_GOOGLE_APIS": "off", **extra}


def replay(tmp_path: Path, document: Any, expect_exit: int, **env: str) -> str:
    """``python -m responder replay FILE``: the record line it prints."""
    path = tmp_path / f"replayed-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(document, indent=2))
    done = responder_cli("replay", str(path), env=_clean_env(**env))
    assert done.returncode == expect_exit, done.stdout + done.stderr
    (line,) = done.stdout.strip().splitlines()
    return line


def line_of(outcome: Any) -> str:
    out = io.StringIO()
    emit(outcome.record, out)
    return out.getvalue().strip()


def deliver(responder: Any) -> Any:
    return responder.respond(Delivery(payload=json.dumps(FINDING).encode(), shape="push"))


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One LogEntry per kind of decision, each from the code that writes it."""
    tmp = tmp_path_factory.mktemp("replays")
    lines: dict[str, str] = {}
    # A dead letter as `gcloud pubsub subscriptions pull --format=json` prints it, whose finding names an invalid pod.
    bad = notification(pod="Cart_API!", name_suffix="badbadbadbad")
    lines["rejected"] = replay(tmp, dead_letter_pulled(bad), 2)
    # Enforce mode with no usable cluster credentials: containment cannot run, the delivery must be retried.
    lines["unreachable"] = replay(
        tmp,
        notification(name_suffix="unreachable0001"),
        1,
        RESPONDER_MODE="enforce",
        RESPONDER_ACTION="isolate",
        RESPONDER_VERIFY_FINDING="false",
        RESPONDER_KUBECONFIG=str(tmp / "missing.kubeconfig"),
    )
    # The default: a dry run decides and plans, contains nothing.
    lines["dry_run"] = replay(tmp, notification(name_suffix="dryrun000001"), 0)

    kube = FakeKube()
    kube.add_pod(NS, POD, {"app": "web"})
    responder = make(kube)
    lines["contained"] = line_of(deliver(responder))
    lines["duplicate"] = line_of(deliver(responder))

    failing = FakeKube()
    failing.add_pod(NS, POD, {"app": "web"})
    failing.fail_next["patch_pod_metadata"] = 100  # every isolating write to the pod fails
    lines["write_failed"] = line_of(deliver(make(failing)))

    # Terminal and acknowledged with an attacker possibly still connected, as the responder records it: the names are
    # the contained delivery's own (the same finding, cluster and pod).
    contained = json.loads(lines["contained"])
    where = {
        "finding": contained["finding"],
        "category": contained["category"],
        "cluster": contained["cluster"],
        "pod": PodRef(**contained["pod"]),
    }
    # Calico keeps the established session through the deny-all, and the escalated delete is refused by a guard.
    isolated = ActionResult(
        action="isolate",
        status=Status.SUCCEEDED,
        reason="deny-all applied; the dataplane (new-only) does not cut established connections",
        details={"session_survives": True},
    )
    refused = ActionResult(action="delete", status=Status.SKIPPED, reason="standalone pod: no controller replaces it")
    lines["escalation_refused"] = make_record(
        Verdict.ACT,
        "reverse_shell",
        "isolated, but the live session survives and the escalated delete was refused: delete the pod by hand",
        actions=[isolated, refused],
        outcome="not_contained",
        **where,
    ).to_json()
    # A shell SCC vouched for in a protected namespace: rightly not touched, but someone must be told.
    lines["protected_vouched"] = make_record(
        Verdict.IGNORE,
        "protected",
        "namespace is protected: the responder does not act here, a person must end the session",
        outcome="not_contained",
        **where,
    ).to_json()
    # The same terminal record, written in the fallback form (its full form could not be serialised).
    broken = make_record(Verdict.ACT, "reverse_shell", "not contained", outcome="not_contained", **where)
    lines["not_contained_fallback"] = fallback_line(broken, ValueError("unserialisable"))
    return {kind: cloud_run_entry(line) for kind, line in lines.items()}


NOT_CONTAINED = {"escalation_refused", "protected_vouched", "not_contained_fallback"}


def test_the_replays_produced_the_decisions_the_filters_are_tested_on(records: dict[str, dict[str, Any]]) -> None:
    def what(kind: str) -> tuple[Any, ...]:
        entry = records[kind]
        p = entry["jsonPayload"]
        return p["verdict"], p["code"], p["outcome"], entry["severity"], p.get("contained_ms") is not None

    assert what("rejected") == ("reject", "bad_identifier", "done", "ERROR", False)
    assert records["rejected"]["jsonPayload"]["delivery"]["shape"] == "pull"  # read as gcloud pulled it
    assert what("unreachable")[2:] == ("retry", "ERROR", False)
    assert what("dry_run") == ("act", "reverse_shell", "done", "NOTICE", False)
    assert what("contained") == ("act", "reverse_shell", "done", "NOTICE", True)
    assert what("duplicate") == ("ignore", "duplicate", "done", "INFO", False)
    assert what("write_failed")[2:] == ("retry", "ERROR", False)
    failed = {a["action"]: a["status"] for a in records["write_failed"]["jsonPayload"]["actions"]}
    assert failed["isolate"] == "failed"
    contained = records["contained"]["jsonPayload"]
    assert 0 < contained["contained_ms"] <= contained["duration_ms"]
    assert what("escalation_refused")[:4] == ("act", "reverse_shell", "not_contained", "ERROR")
    assert what("protected_vouched")[:4] == ("ignore", "protected", "not_contained", "ERROR")
    assert what("not_contained_fallback")[2:4] == ("not_contained", "ERROR")
    assert "record_error" in records["not_contained_fallback"]["jsonPayload"]


# --- other entries in the same project, which no filter may count as a decision --------------------------------------


def other_entries() -> dict[str, dict[str, Any]]:
    base = cloud_run_entry(json.dumps({"severity": "INFO", "message": "x"}))
    text = {k: v for k, v in base.items() if k != "jsonPayload"}
    request_log = {
        **text,
        "logName": f"projects/{VARS['project_id']}/logs/run.googleapis.com%2Frequests",
        "severity": "ERROR",
        "httpRequest": {"requestMethod": "POST", "status": 500},
    }
    traceback = {
        **text,
        "logName": f"projects/{VARS['project_id']}/logs/run.googleapis.com%2Fstderr",
        "severity": "ERROR",
        "textPayload": "Traceback (most recent call last): ...",
    }
    other_service = cloud_run_entry(
        json.dumps({"severity": "ERROR", "verdict": "reject", "code": "x", "outcome": "retry", "contained_ms": 5}),
        service="another-function",
    )
    startup_line = {**text, "severity": "INFO", "textPayload": "Serving function..."}
    return {
        "request_log_500": request_log,
        "traceback": traceback,
        "other_service": other_service,
        "startup_line": startup_line,
    }


def matching(filter_text: str, entries: dict[str, dict[str, Any]]) -> set[str]:
    predicate = parse_log_filter(filter_text)
    return {kind for kind, entry in entries.items() if predicate(entry)}


# --- metrics ------------------------------------------------------------------------------------------------------------


def test_the_decisions_metric_counts_every_decision_record_and_nothing_else(
    records: dict[str, dict[str, Any]],
) -> None:
    metric = resource("google_logging_metric", "decisions")
    assert metric["filter"] == "${local.decision_filter}"
    assert matching(log_filter("decision_filter"), records) == set(records)
    assert matching(log_filter("decision_filter"), other_entries()) == set()


def test_the_decisions_metric_labels_say_what_was_decided(records: dict[str, dict[str, Any]]) -> None:
    metric = resource("google_logging_metric", "decisions")
    extractors = metric["label_extractors"]
    declared = {label["key"] for label in metric["metric_descriptor"][0]["labels"]}
    assert set(extractors) == declared == {"verdict", "code", "outcome", "severity"}
    for kind, entry in records.items():
        got = {label: extract(entry, extractor) for label, extractor in extractors.items()}
        payload = entry["jsonPayload"]
        assert got == {
            "verdict": payload["verdict"],
            "code": payload["code"],
            "outcome": payload["outcome"],
            "severity": entry["severity"],
        }, kind
        assert all(isinstance(v, str) and v for v in got.values()), (kind, got)


def test_time_to_containment_is_a_distribution_of_deliveries_that_contained(
    records: dict[str, dict[str, Any]],
) -> None:
    metric = resource("google_logging_metric", "time_to_containment")
    assert metric["filter"] == "${local.containment_filter}"
    assert metric["metric_descriptor"][0]["value_type"] == "DISTRIBUTION"
    assert metric["metric_descriptor"][0]["unit"] == "ms"
    assert matching(log_filter("containment_filter"), records) == {"contained"}
    assert matching(log_filter("containment_filter"), other_entries()) == set()
    value = extract(records["contained"], metric["value_extractor"])
    assert isinstance(value, float) and value > 0


# --- alerts -------------------------------------------------------------------------------------------------------------


def test_the_failure_alert_pages_for_a_failed_containment_and_a_rejection_only(
    records: dict[str, dict[str, Any]],
) -> None:
    policy = resource("google_monitoring_alert_policy", "failures")
    condition = policy["conditions"][0]["condition_matched_log"][0]
    assert condition["filter"] == "${local.failure_filter}"
    # Not a not_contained record, although it is written at ERROR: the not_contained alert pages for it (one page).
    assert matching(log_filter("failure_filter"), records) == {"rejected", "unreachable", "write_failed"}
    # Beyond decision records: anything the function logs at ERROR (a traceback, its 500 to Pub/Sub), never another
    # service's entries.
    assert matching(log_filter("failure_filter"), other_entries()) == {"request_log_500", "traceback"}
    # A redelivery pages on its outcome alone, whatever severity it was written at.
    quieter = {**records["write_failed"], "severity": "WARNING"}
    assert matching(log_filter("failure_filter"), {"retry_at_warning": quieter}) == {"retry_at_warning"}
    for kind in ("rejected", "unreachable", "write_failed"):
        labels = {k: extract(records[kind], v) for k, v in condition["label_extractors"].items()}
        assert labels["verdict"] and labels["code"], (kind, labels)
    # One log-match condition needs a notification rate limit; an incident closes once the cause is gone.
    assert policy["alert_strategy"][0]["notification_rate_limit"][0]["period"] == "300s"


def test_the_not_contained_alert_pages_for_every_record_that_left_an_attacker_connected(
    records: dict[str, dict[str, Any]],
) -> None:
    policy = resource("google_monitoring_alert_policy", "not_contained")
    condition = policy["conditions"][0]["condition_matched_log"][0]
    assert condition["filter"] == "${local.not_contained_filter}"
    assert matching(log_filter("not_contained_filter"), records) == NOT_CONTAINED
    assert matching(log_filter("not_contained_filter"), other_entries()) == set()
    # done and retry records never match it, whatever their verdict or severity.
    for kind, entry in records.items():
        if entry["jsonPayload"]["outcome"] in ("done", "retry"):
            assert not matching(log_filter("not_contained_filter"), {kind: entry}), kind
    # It pages on the outcome alone, at whatever severity the record was written.
    quieter = {**records["escalation_refused"], "severity": "WARNING"}
    assert matching(log_filter("not_contained_filter"), {"at_warning": quieter}) == {"at_warning"}
    # The incident names what a person must look at.
    payload = records["escalation_refused"]["jsonPayload"]
    labels = {k: extract(records["escalation_refused"], v) for k, v in condition["label_extractors"].items()}
    assert labels == {
        "code": "reverse_shell",
        "finding": payload["finding"],
        "cluster": payload["cluster"],
        "namespace": payload["pod"]["namespace"],
        "pod": payload["pod"]["name"],
    }
    for label in re.findall(r"\$\$\{log\.extracted_label\.([a-z_]+)\}", json.dumps(policy["documentation"])):
        assert label in condition["label_extractors"], label
    assert policy["severity"] == "CRITICAL"
    assert policy["alert_strategy"][0]["notification_rate_limit"][0]["period"] == "300s"
    # What a person must do: the record's reason, the report's first line, end the session by hand, the runbook.
    content = policy["documentation"][0]["content"]
    for said in ("`reason`", "first line", "delete the pod", "${local.not_contained_filter}"):
        assert said in content, said


def test_every_decision_record_pages_at_most_once(records: dict[str, dict[str, Any]]) -> None:
    """Which log-match alert each record opens: a not_contained record pages through its own alert only, a retry or
    a reject through the failure alert only, a done record through none."""
    alerts = {"failures": log_filter("failure_filter"), "not_contained": log_filter("not_contained_filter")}
    paged = {
        kind: {name for name, text in alerts.items() if matching(text, {kind: entry})}
        for kind, entry in records.items()
    }
    assert paged == {
        "rejected": {"failures"},
        "unreachable": {"failures"},
        "dry_run": set(),
        "contained": set(),
        "duplicate": set(),
        "write_failed": {"failures"},
        "escalation_refused": {"not_contained"},
        "protected_vouched": {"not_contained"},
        "not_contained_fallback": {"not_contained"},
    }


def test_every_alert_policy_exists_by_default_and_notifies_the_configured_channels() -> None:
    for name in ("failures", "not_contained", "dead_letters", "unanswered"):
        policy = resource("google_monitoring_alert_policy", name)
        assert policy["notification_channels"] == "${var.notification_channels}", name
        assert policy["count"].startswith("${var.enable_monitoring"), name
        assert "${local.alert_documentation}" in policy["documentation"][0]["content"], name
    assert "docs/operations.md" in tf_locals()["alert_documentation"]
    assert "var.enable_dead_letter" in resource("google_monitoring_alert_policy", "dead_letters")["count"]


@pytest.mark.parametrize(
    ("policy", "subscription", "metric"),
    [
        ("dead_letters", "${local.names.dead_letter_sub}", "subscription/num_undelivered_messages"),
        ("unanswered", "${local.names.findings_sub}", "subscription/oldest_unacked_message_age"),
    ],
)
def test_the_pubsub_alerts_watch_the_module_own_subscriptions(policy: str, subscription: str, metric: str) -> None:
    threshold = resource("google_monitoring_alert_policy", policy)["conditions"][0]["condition_threshold"][0]
    assert f'resource.labels.subscription_id = "{subscription}"' in threshold["filter"]
    assert f'metric.type = "pubsub.googleapis.com/{metric}"' in threshold["filter"]
    assert threshold["comparison"] == "COMPARISON_GT"
    subscriptions = [
        body["name"]
        for block in _blocks("pubsub.tf")["resource"]
        for body in block.get("google_pubsub_subscription", {}).values()
    ]
    assert subscription in subscriptions


def test_an_unanswered_finding_is_one_older_than_the_configured_minutes() -> None:
    threshold = resource("google_monitoring_alert_policy", "unanswered")["conditions"][0]["condition_threshold"][0]
    assert threshold["threshold_value"] == "${var.unanswered_after_min * 60}"


# --- dashboard ----------------------------------------------------------------------------------------------------------


def test_the_dashboard_charts_the_metrics_the_module_creates() -> None:
    template = (TF_DIR / "dashboards" / "responder.json").read_text()
    variables = resource("google_monitoring_dashboard", "responder")["dashboard_json"]
    for var in re.findall(r"(?<!\$)\$\{([a-z_]+)\}", template):
        assert f"{var} =" in variables or f"{var}=" in variables.replace(" ", ""), var
    names = {k: render(v) for k, v in tf_locals()["metric_names"].items()}
    rendered = (
        template.replace("$${", "\0")
        .replace("${function}", VARS["name"])
        .replace("${decisions}", names["decisions"])
        .replace("${time_to_containment}", names["time_to_containment"])
        .replace("${findings_sub}", f"{VARS['name']}-findings-push")
        .replace("${dead_letter_sub}", f"{VARS['name']}-findings-dead-letter")
        .replace("\0", "${")
    )
    dashboard = json.loads(rendered)
    widgets = [tile["widget"] for tile in dashboard["mosaicLayout"]["tiles"]]
    filters = [data["timeSeriesQuery"]["timeSeriesFilter"] for w in widgets for data in w["xyChart"]["dataSets"]]
    metric_types = {re.search(r'metric\.type="([^"]+)"', f["filter"]).group(1) for f in filters}  # type: ignore[union-attr]
    assert metric_types == {
        f"logging.googleapis.com/user/{names['decisions']}",
        f"logging.googleapis.com/user/{names['time_to_containment']}",
        "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    }
    grouped = {g for f in filters for g in f["aggregation"].get("groupByFields", [])}
    declared = {
        label["key"] for label in resource("google_logging_metric", "decisions")["metric_descriptor"][0]["labels"]
    }
    assert grouped == {"metric.label.verdict", "metric.label.code"}
    assert {g.removeprefix("metric.label.") for g in grouped} <= declared
    titles = " / ".join(w["title"] for w in widgets).lower()
    for shown in ("verdict", "code", "time to containment", "failures", "dead letters"):
        assert shown in titles, shown


# --- docs/operations.md -------------------------------------------------------------------------------------------------


def _doc_section(title: str) -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def alert_titles() -> dict[str, str]:
    """Each alert policy's display name without the function's name: what the operator's page says."""
    titles = {}
    for block in _blocks("monitoring.tf")["resource"]:
        for name, body in block.get("google_monitoring_alert_policy", {}).items():
            titles[name] = re.sub(r"^\$\{local\.names\.function\}: ", "", body["display_name"])
    return titles


def test_what_pages_you_lists_every_alert_policy() -> None:
    table = _doc_section("What pages you")
    listed = re.findall(r"^\| \*\*(.+?)\*\*", table, re.M)
    titles = alert_titles()
    assert "an attacker may still be connected" in titles.values()
    # "after N min" is the variable's value in the deployed title.
    assert {t.replace("${var.unanswered_after_min}", "N") for t in titles.values()} == set(listed)


def test_the_outcomes_table_lists_every_outcome_and_the_alert_it_pages() -> None:
    table = _doc_section("Outcomes")
    found = re.findall(r"^\| `([a-z_]+)`[^|]*\|(.*)$", table, re.M)  # one outcome may take a row per verdict
    assert {outcome for outcome, _ in found} == set(get_args(RecordOutcome))
    rows = {outcome: (outcome, " ".join(r for o, r in found if o == outcome)) for outcome, _ in found}
    titles = set(alert_titles().values())
    for outcome, row in rows.items():
        named = set(re.findall(r"\*\*(.+?)\*\*", row[1]))
        assert named <= titles, (outcome, named - titles)
    assert "**an attacker may still be connected**" in rows["not_contained"][1]
    assert "**a finding failed or was rejected**" in rows["retry"][1]


# --- the fleet's records: canary and outside_fleet (issue 32) -------------------------------------------------------------


def fleet_records(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The two records the fleet adds, in the shapes the responder writes them (shared contract of issue 32): a canary
    SCC vouched for (ignore/canary/done, INFO) and a finding for a cluster outside RESPONDER_FLEET (ignore/outside_fleet/
    done, WARNING); plus near misses that must not count as either."""
    contained = records["contained"]["jsonPayload"]
    where = {"finding": contained["finding"], "category": contained["category"], "cluster": contained["cluster"]}

    def entry(code: str, severity: str, outcome: RecordOutcome = "done", verdict: Verdict = Verdict.IGNORE) -> dict:
        line = make_record(verdict, code, f"{code} record", outcome=outcome, **where).to_json()
        built = cloud_run_entry(line)
        built["severity"] = severity
        return built

    return {
        "canary": entry("canary", "INFO"),
        "outside_fleet": entry("outside_fleet", "WARNING"),
        # A canary the function could not finish (its settings broken): asks for redelivery, proves nothing.
        "canary_retry": entry("canary", "ERROR", outcome="retry"),
        # A canary refused (a forged one under the canary's name: SCC does not vouch for it).
        "canary_rejected": entry("canary", "ERROR", verdict=Verdict.REJECT),
    }


def test_the_canary_metric_counts_only_a_canary_that_went_through(records: dict[str, dict[str, Any]]) -> None:
    metric = resource("google_logging_metric", "canary")
    assert metric["filter"] == "${local.canary_filter}"
    fleet = fleet_records(records)
    assert matching(log_filter("canary_filter"), fleet) == {"canary"}
    assert matching(log_filter("canary_filter"), records) == set()
    assert matching(log_filter("canary_filter"), other_entries()) == set()
    # The absence alert watches that metric, for 3 intervals, on the function's own Cloud Run revisions.
    policy = resource("google_monitoring_alert_policy", "canary_missing")
    absent = policy["conditions"][0]["condition_absent"][0]
    assert "resource.type" in absent["filter"] and "cloud_run_revision" in absent["filter"]
    assert "logging.googleapis.com/user/${local.metric_names.canary}" in absent["filter"]
    assert absent["duration"] == "${local.canary_absent_after_s}s"
    assert tf_locals()["canary_absent_after_s"] == "${var.canary_interval_min * 60 * 3}"
    assert policy["notification_channels"] == "${var.notification_channels}"
    assert "${time_sleep.canary_metric_propagation}" in policy["depends_on"]


def test_the_outside_fleet_alert_is_low_urgency_and_matches_only_outside_fleet_records(
    records: dict[str, dict[str, Any]],
) -> None:
    policy = resource("google_monitoring_alert_policy", "outside_fleet")
    condition = policy["conditions"][0]["condition_matched_log"][0]
    assert condition["filter"] == "${local.outside_fleet_filter}"
    fleet = fleet_records(records)
    assert matching(log_filter("outside_fleet_filter"), fleet) == {"outside_fleet"}
    assert matching(log_filter("outside_fleet_filter"), records) == set()
    assert matching(log_filter("outside_fleet_filter"), other_entries()) == set()
    assert policy["severity"] == "WARNING"
    assert policy["notification_channels"] == "${var.notification_channels}"
    assert policy["alert_strategy"][0]["notification_rate_limit"][0]["period"] == "3600s"
    labels = {k: extract(fleet["outside_fleet"], v) for k, v in condition["label_extractors"].items()}
    assert labels["cluster"] == fleet["outside_fleet"]["jsonPayload"]["cluster"]
    for label in re.findall(r"\$\$\{log\.extracted_label\.([a-z_]+)\}", json.dumps(policy["documentation"])):
        assert label in condition["label_extractors"], label


def test_neither_fleet_record_pages_as_a_failure(records: dict[str, dict[str, Any]]) -> None:
    fleet = fleet_records(records)
    alerts = {
        "failures": log_filter("failure_filter"),
        "not_contained": log_filter("not_contained_filter"),
        "outside_fleet": log_filter("outside_fleet_filter"),
    }
    paged = {kind: {n for n, f in alerts.items() if matching(f, {kind: e})} for kind, e in fleet.items()}
    assert paged["canary"] == set()
    assert paged["outside_fleet"] == {"outside_fleet"}
    assert paged["canary_retry"] == {"failures"}  # a broken canary pages as a failure, like any retry


def _failure_datasets() -> list[str]:
    template = (TF_DIR / "dashboards" / "responder.json").read_text().replace("$${", "${")
    dashboard = json.loads(template)
    (tile,) = [t for t in dashboard["mosaicLayout"]["tiles"] if t["widget"]["title"].startswith("Failures")]
    return [d["timeSeriesQuery"]["timeSeriesFilter"]["filter"] for d in tile["widget"]["xyChart"]["dataSets"]]


def test_the_failures_tile_counts_each_decision_once() -> None:
    """Every (outcome, severity) a decision can carry falls in at most one of the tile's stacked series: a retry
    (always ERROR) is not counted again as an ERROR, nor a not_contained record."""
    datasets = [dict(re.findall(r'metric\.label\.(\w+)="([^"]+)"', f)) for f in _failure_datasets()]
    for outcome in get_args(RecordOutcome):
        for severity in ("INFO", "NOTICE", "WARNING", "ERROR"):
            labels = {"outcome": outcome, "severity": severity}
            hits = [d for d in datasets if all(labels.get(k) == v for k, v in d.items())]
            assert len(hits) <= 1, (labels, hits)
    # And every failure the alert counts is in the tile: retries, rejections (ERROR, done), not_contained.
    covered = {(d.get("outcome"), d.get("severity")) for d in datasets}
    assert covered == {("retry", None), ("done", "ERROR"), ("not_contained", None)}


def test_no_dashboard_tile_writes_a_zero_position() -> None:
    # The Monitoring API drops xPos/yPos 0, so a written 0 is a diff on every plan (terraform-provider-google#16173).
    template = (TF_DIR / "dashboards" / "responder.json").read_text().replace("$${", "${")
    for tile in json.loads(template)["mosaicLayout"]["tiles"]:
        for key in ("xPos", "yPos"):
            assert tile.get(key, 1) != 0, tile["widget"]["title"]
