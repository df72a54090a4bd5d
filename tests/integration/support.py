"""Helpers the cluster suites share: kubectl on the lab cluster, and a play of module tasks run as users run it."""

import contextlib
import json
import os
import subprocess
import sys
import threading

import pytest
import yaml

from tests.lab import COLLECTIONS_PATH, cache_root, fleet, kube, webhook


def kubectl(lab, *args, stdin=None):
    """kubectl on the lab cluster ``lab`` (the kube_lab fixture); its stdout."""
    return kube.kubectl(lab["state_dir"], lab["binaries"], *args, stdin=stdin)


def kubectl_json(lab, *args):
    return json.loads(kubectl(lab, *args, "-o", "json"))


class Play:
    """One ansible-playbook run: each task's result (json callback) or the raw output."""

    def __init__(self, process, results):
        self.rc = process.returncode
        self.output = process.stdout + process.stderr
        self.results = results

    @property
    def result(self):
        return self.results[-1]


def playbook_command(path, *options, callback="ansible.posix.json"):
    """The command line and environment that run the playbook at ``path`` on localhost with this checkout's collection."""
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_STDOUT_CALLBACK=callback,
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local", path, *options], env


def run_play(lab, tasks, *options, callback="ansible.posix.json"):
    """Run ``tasks`` on localhost with ansible-playbook, the cluster modules pointed at the lab's kubeconfig."""
    playbook = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/wincontainers.gmsa.cluster": {"kubeconfig": lab["kubeconfig"]}},
            "tasks": tasks,
        }
    ]
    path = os.path.join(lab["state_dir"], "itest-playbook-%d.yml" % threading.get_ident())
    with open(path, "w", encoding="utf-8") as playbook_file:
        yaml.safe_dump(playbook, playbook_file)
    command, env = playbook_command(path, *options, callback=callback)
    try:
        process = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    finally:
        os.unlink(path)
    results = []
    if callback == "ansible.posix.json" and process.stdout.strip():
        results = [task["hosts"]["localhost"] for task in json.loads(process.stdout)["plays"][0]["tasks"]]
    return Play(process, results)


# The clusters suites start for themselves (fault injection, interrupted runs); `make lab-down` removes any that an
# interrupted session left.
OWN_CLUSTERS = ("faults", "chaos")


def own_cluster_state_dir(name):
    return os.path.join(cache_root(), "suite-clusters", name)


@contextlib.contextmanager
def own_cluster(name):
    """A control plane of the test's own beside the lab's (tests/lab/fleet.py), for faults the shared one must not
    see; what an interrupted run left is removed first, and the cluster on exit. Its facts are kube_lab's."""
    member = fleet.Member(name, own_cluster_state_dir(name), False)
    fleet.down_member(member)
    try:
        facts = fleet.up_member(member)
    except (kube.LabError, webhook.WebhookError) as error:
        fleet.down_member(member)
        pytest.fail("cluster %s did not start: %s" % (name, error), pytrace=False)
    try:
        yield facts
    finally:
        fleet.down_member(member)
