"""tools/cluster's RSR_KUBE switch: unset (or 1.35) is Kubernetes 1.35 built with Go, whose command lines drop only
what 1.24 removed (and run the ServiceAccount admission plugin, as GKE does); 1.20 is the old Debian build with its
command lines unchanged; anything else is refused rather than guessed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from cluster import gobuild
from cluster.commands import LEGACY_ONLY_FLAGS, Ports, all_commands
from cluster.credentials import Credentials
from cluster.layout import Layout
from node.host import NodeNames, kubelet_config


@pytest.mark.parametrize("value", ["1.20", "1.20.2"])
def test_120_is_asked_for_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RSR_KUBE", value)
    assert gobuild.requested() is None
    assert gobuild.wanted_version() == "1.20.2"


@pytest.mark.parametrize("value", ["", "1.35"])
def test_135_is_the_default_and_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RSR_KUBE", value)
    assert gobuild.requested() == "1.35"
    assert gobuild.wanted_version() == "1.35.4"
    monkeypatch.setenv("RSR_KUBE", "1.36")
    with pytest.raises(SystemExit):
        gobuild.requested()


def _commands(legacy: bool, names: NodeNames | None = None) -> dict[str, list[str]]:
    pki = Path("/nonexistent/pki")
    creds = Credentials({}, pki / "sa.key", pki / "sa.pub", pki / "a.key", pki / "a.crt", pki / "k.key", pki / "k.crt")
    return all_commands(Path("/bin"), Layout(Path("/nonexistent")), Ports(*range(1, 8)), creds, names, True, legacy)


def test_135_drops_only_the_flags_124_removed_and_admits_service_accounts() -> None:
    old, new = _commands(legacy=True), _commands(legacy=False)
    assert old.keys() == new.keys() == {"etcd", "kube-apiserver", "kube-controller-manager"}
    for name, argv in old.items():
        assert [arg for arg in argv if arg not in LEGACY_ONLY_FLAGS] == new[name]
    assert {arg for argv in old.values() for arg in argv} >= LEGACY_ONLY_FLAGS
    assert not any("ServiceAccount" in arg for arg in new["kube-apiserver"])


def test_the_135_kubelet_takes_its_sandbox_image_from_containerd_and_has_no_runtime_flag() -> None:
    """1.27 removed --container-runtime; 1.35's kubelet refuses --pod-infra-container-image (containerd's config
    names the sandbox image); the scheduler loses --port=0 with the rest of 1.24's removals."""
    names = NodeNames.for_dir(Path("/nonexistent"))
    old, new = _commands(legacy=True, names=names), _commands(legacy=False, names=names)
    assert old.keys() == new.keys() >= {"kubelet", "kube-scheduler", "containerd"}
    assert "--container-runtime=remote" in old["kubelet"] and "--container-runtime=remote" not in new["kubelet"]
    assert any(a.startswith("--pod-infra-container-image") for a in old["kubelet"])
    assert not any(a.startswith("--pod-infra-container-image") for a in new["kubelet"])
    assert "--port=0" in old["kube-scheduler"] and "--port=0" not in new["kube-scheduler"]
    assert "failCgroupV1: false" in kubelet_config(Path("/pki"), names, 1, legacy=False)
    assert "failCgroupV1" not in kubelet_config(Path("/pki"), names, 1, legacy=True)


def test_the_135_binaries_report_their_release() -> None:
    flags = gobuild._ldflags(gobuild.KUBE_VERSION)
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=35" in flags
