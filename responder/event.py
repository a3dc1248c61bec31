"""The event: one finding on its way through the pipeline, what is known about it gathered once and handed along
from stage to stage (see ``responder.service``), and the records and outcomes it ends in."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from responder.config import Mode
from responder.containment.context import Evidence, Prefetched
from responder.containment.plan import Plan
from responder.containment.runner import Blocker, ContainmentRequest
from responder.containment.scheduling import Schedule
from responder.containment.verification import Verification
from responder.errors import ResponderError
from responder.intake import categories
from responder.intake.categories import CategoryProfile
from responder.intake.findings import Finding
from responder.intake.sanitize import clean
from responder.intake.triage import Target, Triage, Verdict
from responder.ports import ConfigMapView, Connection, NamespaceView, PodView
from responder.report.outcome import Outcome
from responder.report.record import DecisionRecord, DeliveryInfo, PodRef, make_record


@dataclass
class Event:
    """One finding on its way through the pipeline: what is known about it, gathered once and handed along.

    Filled in stage by stage: triage (``verdict``), SCC's answer when it was asked before containment
    (``scc_answer``: the message lacked fields, or the delivery may be a redelivery), preflight (``connection``,
    ``pod``, ``blocker``, ``prefetched``), and the plan, computed once from the pod's labels (or the finding's, when
    there is no pod).
    """

    finding: Finding
    verdict: Triage
    delivery: DeliveryInfo
    mode: Mode
    warnings: list[str]
    scc_answer: Verification | None = None  # SCC's word on the message, when it was asked before containment
    connection: Connection | None = None
    no_cluster_why: str | None = None  # why the investigation has no cluster, when it has none
    blocker: Blocker | None = None
    pod: PodView | None = None
    pod_read: Future[PodView] | None = None  # the pod read itself, when it went out in round one
    # A redelivery's read of the quarantined identities, sent beside the pod read (the convergence check needs it).
    identities_read: Future[ConfigMapView] | None = None
    pod_read_at: float | None = None  # when it went out (time.monotonic), for the pod branch's duration
    prefetched: Prefetched = field(default_factory=Prefetched)
    namespace_read: Future[NamespaceView] | None = None  # the namespace (its exemption label), read in round one
    plan: Plan | None = None
    planned_from: tuple[Mapping[str, str], Mapping[str, str]] | None = None  # the labels ``plan`` was computed from

    def namespace_labels(self) -> Mapping[str, str]:
        """The namespace's labels, once read; empty when not read or the read failed (then nothing is exempt: an
        operator's exemption that cannot be read never silences a vouched shell, which would page anyway)."""
        if self.namespace_read is None:
            return {}
        try:
            return self.namespace_read.result().labels
        except ResponderError as exc:
            note = f"namespace {self.target.namespace} could not be read for its exemption label: {clean(exc, 160)}"
            if note not in self.warnings:
                self.warnings.append(note)
            return {}

    @property
    def target(self) -> Target:
        """The pod the finding names (only events that passed triage get this far)."""
        assert self.verdict.target is not None
        return self.verdict.target

    @property
    def profile(self) -> CategoryProfile:
        """What the finding's category means to the responder (only events that passed triage get this far, so its
        category has a profile)."""
        return categories.of(self.finding.category)

    @property
    def labels(self) -> Mapping[str, str]:
        """The labels the policy matches: the live pod's, else the finding's."""
        return self.pod.labels if self.pod else self.finding.pod_labels

    def record(self, verdict: Verdict, code: str, reason: str, **fields: Any) -> DecisionRecord:
        """The decision record for this event, with what every record says about it."""
        about: dict[str, Any] = {"finding": self.finding.name, "category": self.finding.category}
        if self.verdict.target is not None:
            target = self.verdict.target
            about |= {"cluster": target.cluster.path, "pod": PodRef(namespace=target.namespace, name=target.pod)}
        return make_record(
            verdict,
            code,
            reason,
            delivery=self.delivery,
            warnings=list(self.warnings),
            mode=self.mode,
            **about,
            **fields,
        )

    def containment(
        self, plan: Plan, verifying: Future[Verification], evidence: Evidence, schedule: Schedule
    ) -> ContainmentRequest:
        """What the runner needs of this event to run ``plan``."""
        return ContainmentRequest(
            finding=self.finding,
            target=self.target,
            plan=plan,
            connection=self.connection,
            pod=self.pod,
            blocker=self.blocker,
            prefetched=self.prefetched,
            verifying=verifying,
            evidence=evidence,
            schedule=schedule,
        )

    def outcome(self, record: DecisionRecord, **fields: Any) -> Outcome:
        """An outcome that ends the event here."""
        return Outcome(record=record, finding=self.finding, triage=self.verdict, **fields)
