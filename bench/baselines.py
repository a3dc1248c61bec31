"""What the responder is measured against: :class:`NaiveSequential` ("enrich everything, then act") and
:class:`TwoRounds` (the floor: the two rounds isolation takes, and nothing else)."""

from __future__ import annotations

from typing import Any


class NaiveSequential:
    """Baseline: "enrich everything, then act", from the same adapters and parts as the responder.

    parse + triage → connect → ``Investigator.investigate`` to completion (its branches run concurrently among
    themselves, exactly as in the responder) → plan on the investigated pod (read again only if that branch failed)
    → run the plan's steps in order through the action registry (label, isolate, capture: with ``action=isolate``
    there is no destructive step, so no verification or budget gate) → security marks. No redelivery logic: the
    baseline exists to time the order of work, not to replace the responder.
    """

    def __init__(self, deps: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from responder.investigation.investigator import Investigator

        self.deps = deps
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="naive")
        self.investigator = Investigator(
            deps.logs, deps.settings.enrichment_timeout_s, self.pool, log_window_min=deps.policy.defaults.log_window_min
        )

    def respond(self, payload: bytes) -> dict[str, Any]:
        from responder.containment import registry
        from responder.containment.context import ActionContext, Evidence
        from responder.intake.findings import to_finding
        from responder.intake.notification import parse_notification
        from responder.intake.triage import triage

        engine = self.deps.policy
        finding = to_finding(parse_notification(payload))
        target = triage(finding, engine.defaults.categories).target
        assert target is not None, "the baseline only handles actionable findings"
        connection = self.deps.connector.connect(target.cluster)
        investigation = self.investigator.investigate(finding, target, connection, None)
        pod = investigation.pod or connection.kube.get_pod(target.namespace, target.pod)
        plan = engine.plan(finding, target, pod.labels)
        assert not any(s.destructive for s in plan.steps), "the baseline does not implement the destructive gate"
        ctx = ActionContext(
            kube=connection.kube,
            target=target,
            finding=finding,
            dry_run=plan.dry_run,
            pod=pod,
            cluster_info=connection.info,
            evidence=Evidence(),
            now=self.deps.clock(),
        )
        results = [registry.get(step.action).run(ctx, step.params) for step in plan.steps]
        if self.deps.findings_api is not None and finding.name:
            self.deps.findings_api.update_marks(finding.name, {"rsr_status": "isolated", "rsr_actions": "baseline"})
        return {"actions": {r.action: r.status.value for r in results}, "investigation": investigation}


class TwoRounds:
    """The floor: the two rounds isolation takes, made by a client that does nothing else.

    Round one: the pod read, the namespace's policies, the deny-all create. Round two: the exclusion of every
    allowing policy that selects the pod and the quarantine label, all at once. Same adapter, same connections, same
    proxy as the responder; no parsing, triage, policy, verification, investigation or evidence. What it takes is what
    two rounds cost on this machine, which no responder can beat.
    """

    def __init__(self, kube: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.kube = kube
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="floor")

    def contain(self, namespace: str, pod_name: str) -> None:
        from responder.containment.keys import DENY_ALL_POLICY, QUARANTINE_LABEL
        from responder.containment.shape import deny_all_body
        from responder.ports import LabelSelectorRequirement

        kube, pool = self.kube, self.pool
        reading = pool.submit(kube.get_pod, namespace, pod_name)
        listing = pool.submit(kube.list_network_policies, namespace)
        creating = pool.submit(kube.create_network_policy, namespace, deny_all_body())
        pod, listed = reading.result(), listing.result()
        creating.result()
        exclude = LabelSelectorRequirement(key=QUARANTINE_LABEL, operator="NotIn", values=("true",))
        writes = [
            pool.submit(
                kube.set_network_policy_selector,
                namespace,
                p.name,
                p.pod_selector.model_copy(update={"match_expressions": (*p.pod_selector.match_expressions, exclude)}),
                p.resource_version,
            )
            for p in listed
            if p.name != DENY_ALL_POLICY and p.pod_selector.matches(pod.labels)
        ]
        writes.append(
            pool.submit(kube.patch_pod_metadata, namespace, pod.name, pod.uid, {QUARANTINE_LABEL: "true"}, {})
        )
        for write in writes:
            write.result()
