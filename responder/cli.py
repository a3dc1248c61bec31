"""Command line: replay | plan | validate-policy | schema | publish-sample.

``replay`` is the function's body on a file: it auto-detects the envelope, prints the decision record as JSON and exits
0 (act / ignore: done), 2 (reject), 1 (error, or unfinished: redelivered in the function) or 3 (not contained:
a person must act). Without a cluster or credentials it still decides and plans (dry-run).

Whatever a finding, a file name or an error message holds, the terminal sees it through ``clean`` (the same cleaning
the records and reports get): one line per value, no escapes, no carriage returns, no bidi overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from responder.config import Settings
from responder.errors import ConfigError, InvalidEnvelope, ResponderError
from responder.intake.sanitize import clean
from responder.intake.scope import CANARY, OUTSIDE_FLEET, Scope, canary_reason, outside_fleet_reason
from responder.intake.triage import Triage, Verdict

if TYPE_CHECKING:
    from responder.containment.plan import Plan
    from responder.intake.findings import Finding

EXIT_OK, EXIT_ERROR, EXIT_REJECT, EXIT_NOT_CONTAINED = 0, 1, 2, 3


def say(*values: object, stream: TextIO | None = None, limit: int = 2000) -> None:
    """Print ``values`` space-separated on one line, each cleaned: nothing in them can reach the terminal raw."""
    print(" ".join(clean(v, limit) for v in values), file=stream or sys.stdout)


def say_lines(prefix: str, error: object, stream: TextIO | None = None) -> None:
    """An error of ours whose text has one problem per line (a policy's or the settings' validation): each line
    cleaned and printed on its own, so a control character in a value still cannot reach the terminal raw."""
    first, *rest = str(error).split("\n")
    say(prefix, first, stream=stream)
    for line in rest:
        say(" ", line, stream=stream)


def _settings(policy: Path | None) -> Settings:
    from responder.config import load_settings

    settings = load_settings()
    if policy is not None:
        settings = settings.model_copy(update={"policy_file": policy})
    return settings


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay one file through the responder."""
    from responder.bootstrap import build_responder
    from responder.intake.envelope import detect_bytes
    from responder.report.outcome import rejected
    from responder.report.record import DeliveryInfo, emit

    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        say("error: cannot read", args.file, ":", exc.strerror, stream=sys.stderr)
        return EXIT_ERROR
    responder = build_responder(_settings(args.policy))
    try:
        delivery = detect_bytes(raw)
    except InvalidEnvelope as exc:
        outcome = rejected(exc, DeliveryInfo())
    else:
        try:
            outcome = responder.respond(delivery)
        except Exception as exc:  # a bug: still one record and exit 1, never a traceback for any input
            from responder.report.record import make_record

            record = make_record(
                Verdict.REJECT, "internal_error", f"{type(exc).__name__}: {clean(exc, 300)}", outcome="retry"
            )
            emit(record)
            return EXIT_ERROR
    record_stream = sys.stderr if args.report else sys.stdout
    emit(outcome.record, record_stream)
    if args.report:
        from responder.report.builder import build_report
        from responder.report.markdown import render_markdown

        report = build_report(outcome, owner_keys=responder.deps.policy.defaults.owner_keys)
        # The Markdown cleans every value it holds; the JSON escapes everything outside ASCII.
        print(render_markdown(report) if args.report == "md" else report.model_dump_json(indent=2, ensure_ascii=True))
    if outcome.retry:
        return EXIT_ERROR
    if outcome.not_contained:
        return EXIT_NOT_CONTAINED
    return EXIT_REJECT if outcome.record.verdict is Verdict.REJECT else EXIT_OK


def _plan_json(plan: Plan) -> dict[str, object]:
    return {
        "verdict": "act",
        "mode": plan.mode,
        "rule": plan.rule,
        "skipped": list(plan.skipped),
        "steps": [
            {"action": s.action, "destructive": s.destructive, "params": s.params.model_dump(exclude={"action"})}
            for s in plan.steps
        ],
    }


def cmd_plan(args: argparse.Namespace) -> int:
    """Show the plan for a finding without touching anything."""
    from responder.intake.envelope import detect_bytes
    from responder.intake.findings import to_finding
    from responder.intake.notification import parse_notification
    from responder.intake.triage import triage
    from responder.policy.rules import PolicyEngine, load_policy

    settings = _settings(args.policy)
    engine = PolicyEngine(load_policy(settings.policy_file), settings)
    scope = Scope.of(settings.fleet, settings.canary_source)
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        say("error: cannot read", args.file, ":", exc.strerror, stream=sys.stderr)
        return EXIT_ERROR
    try:
        finding = to_finding(parse_notification(detect_bytes(raw).payload))
    except ResponderError as exc:
        say("reject:", exc, stream=sys.stderr)
        return EXIT_REJECT
    # The pipeline's order (responder/coverage.py): the canary before triage, the fleet after it; `plan` asks no
    # SCC, so it says what the record will be once SCC vouches for the message.
    verdict = _covered(scope, finding) or triage(finding, engine.defaults.categories)
    if verdict.target is not None and not scope.covers(verdict.target.cluster):
        reason = outside_fleet_reason(verdict.target.cluster, finding.category)
        verdict = Triage(Verdict.IGNORE, OUTSIDE_FLEET, f"{reason} (once SCC vouches for it, else a suspected forgery)")
    if verdict.target is None:
        if args.json:
            print(
                json.dumps(
                    {"verdict": verdict.verdict.value, "code": verdict.code, "reason": clean(verdict.reason, 600)}
                )
            )
        else:
            say(f"{verdict.verdict.value}:", f"{verdict.code}:", verdict.reason)
        return EXIT_REJECT if verdict.verdict is Verdict.REJECT else EXIT_OK
    plan = engine.plan(finding, verdict.target, finding.pod_labels)
    if args.json:
        print(json.dumps(_plan_json(plan), indent=2))
        return EXIT_OK
    t = verdict.target
    say("finding ", finding.name)
    say("pod     ", f"{t.namespace}/{t.pod}", "in", t.cluster.path)
    say("mode    ", f"{plan.mode}{' (nothing will be written)' if plan.dry_run else ''}")
    say("rule    ", plan.rule or "(none: report only)")
    for i, step in enumerate(plan.steps, 1):
        params = step.params.model_dump(exclude={"action"})
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        say(f"  {i}.", f"{step.action}({shown}){_gates(step.action)}")
    for reason in plan.skipped:
        say("skipped ", reason)
    return EXIT_OK


def _covered(scope: Scope, finding: Finding) -> Triage | None:
    """The canary's verdict, for a finding under the canary source (before triage, as in the pipeline)."""
    if scope.canary_source is None or not scope.is_canary(finding.name):
        return None
    why = f"{canary_reason(scope.canary_source)} (once SCC vouches for it, else a suspected forgery)"
    return Triage(Verdict.IGNORE, CANARY, why)


def _gates(action: str) -> str:
    """What stands between a planned step and the cluster, from what the action declares (not from its name)."""
    from responder.containment import registry

    traits = registry.traits(action)
    gates = [
        what
        for what, applies in (
            ("ends the pod", traits.ends_pod),
            ("waits for SCC's verification", traits.waits_for_scc),
            ("evidence first", traits.needs_evidence_first),
            ("blast-radius budget", traits.budgeted),
        )
        if applies
    ]
    return f"  [{'; '.join(gates)}]" if gates else ""


def cmd_validate_policy(args: argparse.Namespace) -> int:
    """Validate a policy file."""
    from responder.policy.rules import load_policy

    try:
        policy = load_policy(Path(args.file))
    except ConfigError as exc:
        say_lines("invalid:", exc, stream=sys.stderr)
        return EXIT_ERROR
    say(f"ok: {args.file}: {len(policy.rules)} rule(s), mode {policy.defaults.mode}")
    return EXIT_OK


def cmd_schema(_: argparse.Namespace) -> int:
    """Print the policy JSON Schema."""
    from responder.policy.rules import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_publish_sample(args: argparse.Namespace) -> int:
    """Publish a harmless test finding to the findings topic."""
    import re

    from responder.adapters.pubsub import PubSubPublisher
    from responder.intake.identifiers import parse_cluster_resource
    from responder.intake.sample import sample_notification

    if not re.fullmatch(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][\w.~+%-]{2,254}", args.topic):
        say(f"error: --topic must be projects/PROJECT/topics/TOPIC, got {args.topic!r}", stream=sys.stderr)
        return EXIT_ERROR
    cluster = parse_cluster_resource(f"//container.googleapis.com/{args.cluster}")
    data = sample_notification(cluster, args.organization)
    message_id = PubSubPublisher(_settings(None)).publish(args.topic, data, {"rsr-sample": "true"})
    print(json.dumps({"published": message_id, "topic": args.topic, "finding": json.loads(data)["finding"]["name"]}))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and --help)."""
    parser = argparse.ArgumentParser(prog="python -m responder", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "replay",
        help="replay a notification / CloudEvent / push body / legacy event file, or one dead letter "
        "(`gcloud pubsub subscriptions pull --format=json` output or the message's JSON)",
    )
    p.add_argument("file")
    p.add_argument("--policy", type=Path, help="policy file (default: RESPONDER_POLICY_FILE or policy.yaml)")
    p.add_argument("--report", choices=["md", "json"], help="print the incident report (record goes to stderr)")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("plan", help="show what would run for a finding, and why")
    p.add_argument("file")
    p.add_argument("--policy", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("validate-policy", help="check a policy file")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate_policy)
    p = sub.add_parser("publish-sample", help="publish a harmless test finding (reported, never acted on)")
    p.add_argument("--topic", required=True, help="projects/P/topics/T (the findings topic)")
    p.add_argument(
        "--cluster",
        default="projects/rsr-sample-project/locations/us-central1/clusters/rsr-sample",
        help="projects/P/locations/L/clusters/C the sample names",
    )
    p.add_argument("--organization", default="0", help="organization ID for the sample's names")
    p.set_defaults(func=cmd_publish_sample)
    p = sub.add_parser("schema", help="print the policy file's JSON Schema")
    p.set_defaults(func=cmd_schema)
    from responder.aftercare.commands import add_commands  # status, release: the operator's side

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ResponderError as exc:  # ConfigError included
        say_lines("error:", exc, stream=sys.stderr)
        return EXIT_ERROR
    return code
