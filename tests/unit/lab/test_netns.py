"""tests/lab/netns.py: which namespaces a cluster owns, that only the recorded process is ever signalled, and how the
forwarder relays.

`ip` is faked for the listing; the processes are real (a `sleep` each), so signalling is really checked.
"""

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.lab import netns


@pytest.mark.parametrize("cluster", ["lab", "fleet-2", "a", "x" * 32])
def test_cluster_names_name_the_namespace(cluster):
    assert netns.cluster_netns(cluster) == "wgmsa-" + cluster


@pytest.mark.parametrize("cluster", ["", "Lab", "lab.pods", "-lab", "lab-", "lab/x", "x" * 33])
def test_a_cluster_name_that_could_claim_another_clusters_namespaces_is_refused(cluster):
    with pytest.raises(netns.NetnsError, match="cluster name"):
        netns.cluster_netns(cluster)


def test_a_cluster_owns_its_namespace_and_the_dotted_ones_under_it_only(monkeypatch):
    names = ["other", "wgmsa-lab-2", "wgmsa-lab.pod-b", "wgmsa-lab", "wgmsa-lab.pod-a", "wgmsa-lab2", "wgmsa-labx.pod"]
    monkeypatch.setattr(netns, "ip", lambda *args: json.dumps([{"name": name} for name in names]))
    assert netns.of_cluster("wgmsa-lab") == ["wgmsa-lab", "wgmsa-lab.pod-a", "wgmsa-lab.pod-b"]


def test_no_namespace_at_all(monkeypatch):
    # `ip -j netns list` prints nothing, not [], before the first namespace is ever made.
    monkeypatch.setattr(netns, "ip", lambda *args: "")
    assert netns.of_cluster("wgmsa-lab") == []


@pytest.fixture(name="sleeper")
def fixture_sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "wgmsa-sleeper"])  # pylint: disable=consider-using-with
    deadline = time.monotonic() + 10
    while not netns.is_running(process.pid, "wgmsa-sleeper"):  # its command line is read from its memory once exec'd
        assert time.monotonic() < deadline, "the sleeper did not start"
        time.sleep(0.01)
    yield process
    process.kill()
    process.wait()


def test_a_recorded_pid_now_running_something_else_is_left_alone(sleeper):
    netns.stop({sleeper.pid: "kube-apiserver"})
    assert sleeper.poll() is None
    assert netns.is_running(sleeper.pid, "wgmsa-sleeper")


def test_the_recorded_process_is_stopped(sleeper):
    netns.stop({sleeper.pid: "wgmsa-sleeper"})
    assert sleeper.wait(timeout=5) == -signal.SIGTERM


@pytest.fixture(name="stubborn")
def fixture_stubborn():
    """A process that ignores SIGTERM."""
    ignore_sigterm = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", ignore_sigterm, "wgmsa-stubborn"], stdout=subprocess.PIPE)  # pylint: disable=consider-using-with
    process.stdout.readline()  # SIGTERM is ignored from now on
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


@pytest.mark.parametrize("timeout", [0, 1])
def test_what_ignores_sigterm_is_killed_after_the_timeout(stubborn, timeout):
    started = time.monotonic()
    netns.stop({stubborn.pid: "wgmsa-stubborn"}, timeout=timeout)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert timeout <= time.monotonic() - started < timeout + 2


def test_a_relay_sends_each_chunk_on_at_once_both_ways():
    """The forwarder turns Nagle's algorithm off on both of its sockets, as the Go servers behind it have it off."""
    with socket.create_server(("127.0.0.1", 0)) as outer, socket.create_server(("127.0.0.1", 0)) as inner:
        caller = socket.create_connection(outer.getsockname())
        client, _caller_address = outer.accept()
        upstream = socket.create_connection(inner.getsockname())
        server, _upstream_address = inner.accept()
        with caller, client, upstream, server:
            netns.relay(client, upstream)
            assert all(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in (client, upstream))
            caller.sendall(b"request")
            assert server.recv(100) == b"request"
            server.sendall(b"response")
            assert caller.recv(100) == b"response"
