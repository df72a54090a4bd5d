"""The lab changes nothing on the host's network, and `labctl down` removes all it made, even after a failed up.

The kube half runs here as a second cluster of its own (its own state dir and cluster name, so its own network
namespaces), through labctl as a user would, beside the shared lab the other suites use and without touching it.
Needs root (network namespaces) and the lab's binaries, like the rest of the lab.
"""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.lab import REPO_ROOT, kube, netns

pytest_plugins = ("tests.lab.pytest_kube",)

CLUSTER = "nettest"
# An address off the machine (documentation range, RFC 5737): `ip route get` only asks, no packet leaves.
OUTSIDE_ADDRESS = "192.0.2.1"
# kube-apiserver's default --service-cluster-ip-range (k8s.io/kubernetes pkg/kubeapiserver/options/options.go, DefaultServiceIPCIDR);
# kwokctl sets none.
SERVICE_RANGE = "10.0.0.0/24"


def _host_network():
    """What the lab must never change in the host's namespace: every route, rule, interface and address."""
    return {
        "routes": netns.ip("route", "show", "table", "all"),
        "routes6": netns.ip("-6", "route", "show", "table", "all"),
        "rules": netns.ip("rule"),
        "rules6": netns.ip("-6", "rule"),
        "interfaces": netns.ip("-br", "link"),
        "addresses": netns.ip("-br", "addr"),
    }


def _labctl(state_dir, *args, check=True):
    command = [sys.executable, "-m", "tests.lab.labctl", *args, "--only", "kube", "--state-dir", state_dir, "--cluster", CLUSTER]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=check, timeout=300)


def _processes_mentioning(*texts):
    """PIDs of the running processes whose command line mentions one of texts."""
    found = []
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
                arguments = cmdline.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if any(text.encode() in arguments for text in texts) and netns.is_running(pid, ""):
            found.append(pid)
    return found


def _leftovers(state_dir):
    """What of the cluster still exists: its namespaces, its processes (every component names the state dir in its
    arguments, a forwarder the namespace), its files."""
    return {
        "netns": netns.of_cluster(netns.cluster_netns(CLUSTER)),
        "processes": _processes_mentioning(state_dir, netns.cluster_netns(CLUSTER)),
        "files": sorted(os.listdir(state_dir)) if os.path.isdir(state_dir) else [],
    }


@pytest.fixture(name="nothing_left")
def fixture_nothing_left(tmp_path):
    """A state dir for the test's own cluster; afterwards, labctl down must leave nothing and the host as it was."""
    state_dir = str(tmp_path / "lab")
    before = _host_network()
    try:
        yield state_dir
    finally:
        _labctl(state_dir, "down")
    assert _leftovers(state_dir) == {"netns": [], "processes": [], "files": []}
    assert _host_network() == before


def test_up_and_down_leave_the_host_network_as_it_was(nothing_left):
    before = _host_network()
    up = _labctl(nothing_left, "up")
    assert "running      True" in up.stdout, up.stdout + up.stderr
    assert _host_network() == before  # and so while the cluster runs

    facts = kube.status(nothing_left, CLUSTER)
    assert facts["netns"] == "wgmsa-" + CLUSTER
    assert kube.kubectl(nothing_left, facts["binaries"], "get", "--raw", "/readyz").strip() == "ok"  # through the forwarder
    _labctl(nothing_left, "down")
    assert _host_network() == before
    # Idempotent: a second down has nothing to do, and says so by succeeding.
    _labctl(nothing_left, "down")


def _net_namespace_of(pid):
    return os.stat("/proc/%d/ns/net" % pid).st_ino


def _apiserver_pid(lab):
    with open(os.path.join(lab["state_dir"], "kwok", "clusters", lab["cluster"], "pids", "kube-apiserver.pid"), encoding="utf-8") as pid_file:
        return int(pid_file.read())


def test_the_api_server_runs_in_a_namespace_with_no_route_off_the_machine(kube_lab):
    namespace = kube_lab["netns"]
    assert _net_namespace_of(_apiserver_pid(kube_lab)) == os.stat(os.path.join("/run/netns", namespace)).st_ino
    assert _net_namespace_of(_apiserver_pid(kube_lab)) != _net_namespace_of(os.getpid())

    # Whatever the host's routes are, the namespace of kube-apiserver has none off the machine.
    outside = subprocess.run(["ip", "-n", namespace, "route", "get", OUTSIDE_ADDRESS], capture_output=True, text=True, check=False)
    assert outside.returncode != 0 and "unreachable" in outside.stderr, outside
    routes = json.loads(netns.ip("-n", namespace, "-j", "route", "show", "table", "main"))
    assert [route for route in routes if route["dst"] == "default"] == []


def test_the_shared_lab_routes_nothing_and_links_nothing_on_the_host(kube_lab):
    # While it runs, with whatever webhook pods the other suites had served: the lab's addresses are reachable only
    # from its own namespaces, no host route leads to them and no host interface is a veth into a lab namespace.
    lab_ranges = [ipaddress.ip_network(cidr) for cidr in (kube_lab["pod_cidr"], SERVICE_RANGE, kube.CONTROL_PLANE_ADDRESS)]
    destinations = [route["dst"] for route in json.loads(netns.ip("-j", "route", "show", "table", "all")) if route["dst"] != "default"]
    assert [dst for dst in destinations if any(ipaddress.ip_network(dst, strict=False).overlaps(lab) for lab in lab_ranges)] == []
    lab_ids = {entry["id"] for entry in json.loads(netns.ip("-j", "netns", "list") or "[]") if entry["name"].startswith(netns.PREFIX) and "id" in entry}
    assert [link["ifname"] for link in json.loads(netns.ip("-j", "link", "show")) if link.get("link_netnsid") in lab_ids] == []


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.2)


def _started_components(state_dir):
    pids_dir = os.path.join(state_dir, "kwok", "clusters", CLUSTER, "pids")
    return [name for name in (os.listdir(pids_dir) if os.path.isdir(pids_dir) else []) if os.path.getsize(os.path.join(pids_dir, name))]


def test_down_after_an_interrupted_up_leaves_nothing(nothing_left):
    # Kill `labctl up` (and kwokctl with it) as soon as the first component of the control plane runs: what it
    # started detaches (kwokctl starts each component in a session of its own) and is left behind.
    command = [sys.executable, "-m", "tests.lab.labctl", "up", "--only", "kube", "--state-dir", nothing_left, "--cluster", CLUSTER]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as labctl:
        _wait_for(lambda: _started_components(nothing_left), "a component of the control plane")
        os.killpg(labctl.pid, signal.SIGKILL)
    left = _leftovers(nothing_left)
    assert left["processes"] and left["netns"] == [netns.cluster_netns(CLUSTER)], left  # or the test proves nothing


def test_down_after_a_failed_up_leaves_nothing(nothing_left):
    # An up that fails once the cluster runs: the API server's port on the host is taken by someone else when
    # the forwarder (stopped, as after a reboot) is started again.
    _labctl(nothing_left, "up")
    port = int(kube.status(nothing_left, CLUSTER)["server"].rsplit(":", 1)[1])
    with open(os.path.join(nothing_left, "wgmsa-%s-apiserver-forwarder.pid" % CLUSTER), encoding="utf-8") as pid_file:
        netns.stop({int(pid_file.read()): netns.FORWARDER_MODULE})
    with socket.create_server(("127.0.0.1", port)):
        failed = _labctl(nothing_left, "up", check=False)
    assert failed.returncode != 0 and "127.0.0.1:%d is in use" % port in failed.stderr, failed
    assert _leftovers(nothing_left)["processes"]
