"""Which control-plane components kube.up starts again: those whose recorded process does not run.

The processes are real: a killed one this test has not reaped is a real zombie, which still answers signal 0
as kwokctl checks it (kwok pkg/utils/exec/cmd_other.go, isRunning), so kwokctl alone would not restart it.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.lab import kube, netns

CLUSTER = "restart"


def start(marker):
    """A sleeping process whose command line contains marker, once it runs."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])  # pylint: disable=consider-using-with
    deadline = time.monotonic() + 10
    while not netns.is_running(process.pid, marker):
        assert time.monotonic() < deadline, "%s did not start" % marker
        time.sleep(0.01)
    return process


def state(pid):
    with open("/proc/%d/stat" % pid, encoding="utf-8") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture(name="processes")
def fixture_processes():
    started = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def record(state_dir, component, pid):
    path = kube._pid_path(state_dir, CLUSTER, component)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as pid_file:
        pid_file.write(str(pid))  # as kwokctl writes it: the number alone
    return path


def test_a_killed_component_not_yet_reaped_is_forgotten_so_that_kwokctl_starts_it(tmp_path, processes):
    state_dir = str(tmp_path)
    running = {component: start(binary) for component, binary in kube.COMPONENT_BINARIES.items()}
    processes.extend(running.values())
    paths = {component: record(state_dir, component, process.pid) for component, process in running.items()}
    killed = running["kube-apiserver"]
    killed.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while state(killed.pid) != "Z":
        assert time.monotonic() < deadline, "the killed process did not exit"
        time.sleep(0.01)
    os.kill(killed.pid, 0)  # what kwokctl asks: the zombie still answers

    assert kube._forget_stopped_components(state_dir, CLUSTER) == ["kube-apiserver"]
    assert not os.path.exists(paths["kube-apiserver"])
    assert all(os.path.exists(path) for component, path in paths.items() if component != "kube-apiserver")
    assert kube._forget_stopped_components(state_dir, CLUSTER) == ["kube-apiserver"]


def test_a_reused_pid_is_forgotten_and_the_process_left_alone(tmp_path, processes):
    state_dir = str(tmp_path)
    other = start("wgmsa-not-the-scheduler")
    processes.append(other)
    path = record(state_dir, "kube-scheduler", other.pid)

    assert "kube-scheduler" in kube._forget_stopped_components(state_dir, CLUSTER)
    assert not os.path.exists(path)
    assert other.poll() is None


def test_components_without_a_pid_file_are_reported_stopped(tmp_path):
    assert kube._forget_stopped_components(str(tmp_path), CLUSTER) == list(kube.COMPONENT_BINARIES)
