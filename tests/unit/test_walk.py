"""How far a reader walks: one finding from ``main.handle_finding`` to its record, traced as it runs.

Every call into the outside world (the in-memory cluster, SCC, Logging, Pub/Sub) and the record's ``emit`` is caught
with the stack that led to it. Work handed to a pool, or queued behind the isolating writes, continues the stack of
the code that asked for it (not of whichever write released the queue), so the stacks read as a newcomer follows the
code. The walk is every module on those stacks: what one has to open to see how the finding became its record.

The bounds are the house rules of issue 22, measured, so that a change that lengthens the walk fails here and says
which modules and how deep. Before the reshaping (059db58) the same trace crossed 15 modules with the first pod write
15 frames below ``handle_finding``; halfway through it (4fc5860), 17 and 17.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from responder import handler
from responder.config import Settings
from responder.containment import scheduling
from responder.policy.rules import PolicyEngine, load_policy
from responder.service import Dependencies, Responder
from tests.notifications import PUBSUB_TYPE, message_published, notification
from tests.unit.fakes import FakeConnector, FakeFindings, FakeKube

ROOT = Path(__file__).resolve().parents[2]
OURS = (str(ROOT / "responder") + "/", str(ROOT / "main.py"))
FAKES = str(Path(__file__).with_name("fakes.py"))
# 14 until issue 31 added containment/identity.py: the step that refuses the quarantined pod's token its writes is a
# concept of its own (the identity guard's parameter), one module worth its step. 16 since issue 30 added
# containment/cluster_tier.py: the tier above the namespace (discovery, then the judgement of what it serves) runs
# behind the writes of every isolation; its judges (cluster_judge.py) are not on the walk when nothing is served.
MAX_MODULES = 16
MAX_FIRST_WRITE_DEPTH = 14

Stack = tuple[tuple[str, str], ...]  # (module, function) from handle_finding down


@dataclass
class Trace:
    """The stacks that reached the outside world, by what they called."""

    calls: list[tuple[str, Stack]] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)

    def stack(self, frame: FrameType | None) -> Stack:
        out: list[tuple[str, str]] = []
        while frame is not None:
            code = frame.f_code
            # Comprehensions are frames in Python 3.11 only: not a step anyone reads.
            if code.co_filename.startswith(OURS) and not code.co_name.startswith("<"):
                out.append((str(Path(code.co_filename).relative_to(ROOT)), code.co_qualname))
            frame = frame.f_back
        return tuple(getattr(self.local, "parent", ())) + tuple(reversed(out))

    def stitched(self, fn: Callable[..., Any], parent: Stack) -> Callable[..., Any]:
        """``fn`` run elsewhere, its stack continuing ``parent``'s."""
        if getattr(fn, "_stitched", False):
            return fn  # queued behind the writes: it continues where it was asked for, not where it was released

        def run(*args: Any, **kwargs: Any) -> Any:
            before = getattr(self.local, "parent", ())
            self.local.parent = parent
            try:
                return fn(*args, **kwargs)
            finally:
                self.local.parent = before

        run._stitched = True  # type: ignore[attr-defined]
        return run

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_filename == FAKES and not code.co_name.startswith("_") and frame.f_back is not None:
            if frame.f_back.f_code.co_filename != FAKES:  # the port call itself, not the fake's own helpers
                self.calls.append((code.co_name, self.stack(frame.f_back)))
        elif code.co_name == "emit" and code.co_filename.endswith("report/record.py"):
            self.calls.append(("emit", self.stack(frame)))

    def modules(self) -> set[str]:
        return {module for _, stack in self.calls for module, _ in stack}


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trace]:
    t = Trace()
    submit, later = cf.ThreadPoolExecutor.submit, scheduling.WritesOut.later

    def traced_submit(pool: cf.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        return submit(pool, t.stitched(fn, t.stack(sys._getframe(1))), *args, **kw)

    def traced_later(latch: scheduling.WritesOut, pool: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return later(latch, pool, t.stitched(fn, t.stack(sys._getframe(1))), *args)

    monkeypatch.setattr(cf.ThreadPoolExecutor, "submit", traced_submit)
    monkeypatch.setattr(scheduling.WritesOut, "later", traced_later)
    yield t
    handler.reset()


def walk_one_finding(trace: Trace) -> None:
    """The shipped policy in enforce mode, on a production Deployment's pod: label, isolate (detach), capture."""
    import main  # functions-framework's entry point, as deployed

    namespace, pod = "production", "cart-api-5c8d7b9f4-q7w2z"
    doc = notification(namespace=namespace, pod=pod)
    kube = FakeKube()
    kube.add_pod(namespace, pod, {"app": "cart-api", "pod-template-hash": "5c8d7b9f4"})
    kube.add_workload(namespace, "ReplicaSet", "cart-api-5c8d7b9f4", owner=("Deployment", "cart-api"))
    kube.add_workload(namespace, "Deployment", "cart-api")
    kube.add_policy(namespace, "allow-all")
    findings = FakeFindings()
    findings.add_from(doc)
    settings = Settings(mode="enforce")
    policy = PolicyEngine(load_policy(ROOT / "policy.yaml"), settings)
    deps = Dependencies(settings=settings, policy=policy, connector=FakeConnector(kube), findings_api=findings)
    handler._responder = Responder(deps)
    event = CloudEvent({"type": PUBSUB_TYPE, "source": "//pubsub.googleapis.com/t", "id": "1"}, message_published(doc))
    threading.setprofile(trace.profile)
    sys.setprofile(trace.profile)
    try:
        main.handle_finding(event)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def first(trace: Trace, call: str) -> Stack:
    return next(stack for name, stack in trace.calls if name == call)


def test_one_finding_crosses_few_modules_and_its_first_pod_write_is_shallow(
    trace: Trace, capsys: pytest.CaptureFixture[str]
) -> None:
    walk_one_finding(trace)
    record = capsys.readouterr().out
    assert '"verdict":"act"' in record and '"isolate"' in record and '"detach"' in record  # the walk it claims to be
    modules = trace.modules()
    write = first(trace, "patch_pod_metadata")
    start = next(i for i, (_, fn) in enumerate(write) if fn == "handle_finding")
    depth = len(write) - start
    path = " > ".join(fn for _, fn in write[start:])
    print(
        f"\n[walk] {len(modules)} modules: {', '.join(sorted(modules))}\n[walk] first pod write, {depth} deep: {path}"
    )
    assert len(modules) <= MAX_MODULES, sorted(modules)
    assert depth <= MAX_FIRST_WRITE_DEPTH, path
    assert {"emit", "patch_pod_metadata", "get_finding", "create_network_policy", "exec"} <= {n for n, _ in trace.calls}
