"""The lab kubelet's pure parts: the atomic writer (as k8s.io/kubernetes pkg/volume/util/atomic_writer.go writes a
volume) and which images it runs."""

import os
import re

import pytest
import urllib3

from tests.lab import stages, webhook

TIMESTAMP_DIR = re.compile(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\w+$")


def listing(directory):
    return {name: os.readlink(os.path.join(directory, name)) if os.path.islink(os.path.join(directory, name)) else "dir"
            for name in os.listdir(directory)}


def test_first_write_publishes_symlinks_into_a_timestamped_directory(tmp_path):
    assert webhook.atomic_write(str(tmp_path), {"tls.crt": (b"cert", 0o644), "tls.key": (b"key", 0o600)})
    entries = listing(str(tmp_path))
    stamped = [name for name in entries if TIMESTAMP_DIR.match(name)]
    assert len(stamped) == 1 and entries[stamped[0]] == "dir"
    assert entries == {stamped[0]: "dir", "..data": stamped[0], "tls.crt": "..data/tls.crt", "tls.key": "..data/tls.key"}
    assert (tmp_path / "tls.key").read_bytes() == b"key"
    assert os.stat(tmp_path / stamped[0] / "tls.key").st_mode & 0o777 == 0o600


def test_an_unchanged_payload_writes_nothing(tmp_path):
    payload = {"token": (b"t", 0o644)}
    webhook.atomic_write(str(tmp_path), payload)
    before = listing(str(tmp_path))
    assert not webhook.atomic_write(str(tmp_path), payload)
    assert listing(str(tmp_path)) == before
    # A key removed is a change even when the rest is the same (pathsToRemove).
    webhook.atomic_write(str(tmp_path), {"token": (b"t", 0o644), "ca.crt": (b"c", 0o644)})
    assert webhook.atomic_write(str(tmp_path), payload)
    assert not os.path.lexists(tmp_path / "ca.crt")


def test_a_change_swaps_data_and_deletes_the_old_directory(tmp_path):
    webhook.atomic_write(str(tmp_path), {"tls.crt": (b"old", 0o644), "gone": (b"x", 0o644)})
    old = os.readlink(tmp_path / "..data")
    # An open handle on the old file, as a process watching it holds: it keeps the old bytes, the path moves on.
    with open(tmp_path / "tls.crt", "rb") as held:
        assert webhook.atomic_write(str(tmp_path), {"tls.crt": (b"new", 0o644)})
        assert held.read() == b"old"
    new = os.readlink(tmp_path / "..data")
    assert new != old and not (tmp_path / old).exists()
    assert (tmp_path / "tls.crt").read_bytes() == b"new"
    assert set(os.listdir(tmp_path)) == {new, "..data", "tls.crt"}


@pytest.mark.parametrize("image, webhook_image, runnable", [
    ("registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0", True, True),
    ("myregistry.example:5000/mirror/k8s-gmsa-webhook:v0.13.0", True, True),
    ("registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.12.1", True, False),
    ("k8s-gmsa-webhook@sha256:" + "0" * 64, True, False),
    ("registry.k8s.io/pause:3.10", False, False),
    ("example.com/k8s-gmsa-webhook-fork:v0.13.0", False, False),
])
def test_which_images_are_the_webhook_and_which_run_here(image, webhook_image, runnable):
    assert stages.is_webhook_image(image) == webhook_image
    assert webhook.runnable_image(image) == runnable


def webhook_pod(**changes):
    pod = {
        "metadata": {"namespace": "gmsa", "name": "webhook-1", "uid": "u1"},
        "spec": {"containers": [{"name": "webhook", "image": "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0"}]},
        "status": {"phase": "Running", "podIP": "10.244.0.7"},
    }
    for path, value in changes.items():
        section, key = path.split("__")
        pod[section][key] = value
    return pod


@pytest.mark.parametrize("changes, wanted", [
    ({}, True),
    ({"status__phase": "Pending"}, False),
    ({"status__podIP": ""}, False),
    ({"metadata__deletionTimestamp": "2026-11-30T21:00:00Z"}, False),
    ({"spec__containers": [{"name": "webhook", "image": "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.12.1"}]}, False),
    ({"spec__containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}, False),
])
def test_which_pods_the_lab_kubelet_runs(changes, wanted):
    assert webhook.wanted(webhook_pod(**changes)) == wanted


def _pod(lifecycle=None, grace=None):
    container = {"name": "webhook", "image": "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0"}
    if lifecycle:
        container["lifecycle"] = lifecycle
    spec = {"containers": [container]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"uid": "u1"}, "spec": spec}


@pytest.mark.parametrize(
    ("pod", "seconds"),
    [
        (_pod(), 0),
        (_pod({"preStop": {"sleep": {"seconds": 5}}}), 5),
        # The kubelet kills the container when the grace period ends, preStop or not.
        (_pod({"preStop": {"sleep": {"seconds": 50}}}), 30),
        (_pod({"preStop": {"sleep": {"seconds": 50}}}, grace=10), 10),
    ],
)
def test_a_stopping_pod_serves_on_for_its_pre_stop_sleep(pod, seconds):
    assert webhook.pre_stop_sleep(pod) == seconds


def test_the_kubelet_stops_a_deleted_pod_after_its_pre_stop_sleep_then_removes_it(monkeypatch):
    class Served:
        stopped = False

        def __init__(self, name, pod):
            self.name, self.namespace, self.pod = name, "ns", pod

        def stop(self):
            self.stopped = True

    deleted = []
    kubelet = object.__new__(webhook.LabKubelet)
    kubelet.draining = {}
    kubelet.core = type("Core", (), {"delete_namespaced_pod": lambda _self, name, namespace, grace_period_seconds: deleted.append(name)})()
    now = [100.0]
    monkeypatch.setattr(webhook.time, "monotonic", lambda: now[0])
    sleeping = Served("sleeping", _pod({"preStop": {"sleep": {"seconds": 5}}}))
    plain, kept = Served("plain", _pod()), Served("kept", _pod({"preStop": {"sleep": {"seconds": 5}}}))
    kubelet.served = {"a": sleeping, "b": plain, "c": kept}
    kubelet._forget("a", deleting=True)
    kubelet._forget("b", deleting=True)
    # Not being deleted (the daemon stops, the pod no longer runs here): no preStop, and the pod object stays.
    kubelet._forget("c")
    assert plain.stopped and kept.stopped and not sleeping.stopped and deleted == ["plain"]
    now[0] = 104.9
    kubelet._stop_drained()
    assert not sleeping.stopped
    now[0] = 105.0
    kubelet._stop_drained()
    assert sleeping.stopped and kubelet.draining == {} and deleted == ["plain", "sleeping"]


def test_the_kubelet_keeps_serving_its_pods_while_the_api_server_is_down(monkeypatch):
    kubelet = object.__new__(webhook.LabKubelet)
    kubelet.served, kubelet.draining, kubelet.stopping = {"a": object()}, {}, False
    attempts = []

    def list_pods(_self):
        attempts.append(len(attempts) + 1)
        if len(attempts) == 3:
            kubelet.stopping = True  # the daemon is told to stop while the API server is still down
        raise urllib3.exceptions.MaxRetryError(None, "/api/v1/pods", "connection refused")

    kubelet.core = type("Core", (), {"list_pod_for_all_namespaces": list_pods})()
    forgotten_after = []
    monkeypatch.setattr(kubelet, "_forget", lambda uid, deleting=False: (forgotten_after.append(len(attempts)), kubelet.served.pop(uid)))
    monkeypatch.setattr(kubelet, "_stop_drained", lambda everything=False: None)
    monkeypatch.setattr(webhook.signal, "signal", lambda *_args: None)
    monkeypatch.setattr(webhook.time, "sleep", lambda _seconds: None)
    kubelet.run()
    # Three refused lists, each retried; the pod was stopped only when the daemon stopped, not by the outage.
    assert attempts == [1, 2, 3] and forgotten_after == [3]
