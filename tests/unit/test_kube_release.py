"""tools/cluster's RSR_KUBE switch (issue 29's spike): unset or 1.20 is today's build, byte for byte the same command
lines; 1.35 is opt-in, drops only the flags 1.24 removed, and anything else is refused rather than guessed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from cluster import gobuild
from cluster.commands import LEGACY_ONLY_FLAGS, Ports, all_commands
from cluster.credentials import Credentials
from cluster.layout import Layout


@pytest.mark.parametrize("value", ["", "1.20", "1.20.2"])
def test_unset_or_120_is_the_default_build(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RSR_KUBE", value)
    assert gobuild.requested() is None


def test_135_is_asked_for_by_name_and_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSR_KUBE", "1.35")
    assert gobuild.requested() == "1.35"
    monkeypatch.setenv("RSR_KUBE", "1.36")
    with pytest.raises(SystemExit):
        gobuild.requested()


def _commands(legacy: bool) -> dict[str, list[str]]:
    pki = Path("/nonexistent/pki")
    creds = Credentials({}, pki / "sa.key", pki / "sa.pub", pki / "a.key", pki / "a.crt", pki / "k.key", pki / "k.crt")
    return all_commands(Path("/bin"), Layout(Path("/nonexistent")), Ports(*range(1, 8)), creds, None, True, legacy)


def test_135_drops_only_the_flags_124_removed() -> None:
    old, new = _commands(legacy=True), _commands(legacy=False)
    assert old.keys() == new.keys() == {"etcd", "kube-apiserver", "kube-controller-manager"}
    for name, argv in old.items():
        assert [arg for arg in argv if arg not in LEGACY_ONLY_FLAGS] == new[name]
    assert {arg for argv in old.values() for arg in argv} >= LEGACY_ONLY_FLAGS


def test_the_135_binaries_report_their_release() -> None:
    flags = gobuild._ldflags(gobuild.KUBE_VERSION)
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=35" in flags
