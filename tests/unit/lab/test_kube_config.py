"""A lab cluster made from another kwokctl configuration is made anew (kwokctl reads it only at creation)."""

from tests.lab import kube

BINARIES = {
    name: "/cache/bin/" + name
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "kwok")
}


def test_the_same_configuration_is_kept(tmp_path):
    (tmp_path / "kwokctl.yaml").write_text(kube._kwokctl_config(BINARIES, 40123), encoding="utf-8")
    assert not kube._created_with_another_configuration(str(tmp_path), BINARIES)


def test_another_configuration_is_noticed(tmp_path):
    older = kube._kwokctl_config(BINARIES, 40123).replace('"enable-aggregator-routing"', '"enable-aggregator-routing-old"')
    (tmp_path / "kwokctl.yaml").write_text(older, encoding="utf-8")
    assert kube._created_with_another_configuration(str(tmp_path), BINARIES)


def test_a_cluster_without_a_saved_configuration_is_left_alone(tmp_path):
    assert not kube._created_with_another_configuration(str(tmp_path), BINARIES)
