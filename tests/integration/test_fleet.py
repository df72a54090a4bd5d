# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The site playbook on a fleet of three clusters of the suite's own (examples/inventories/lab-fleet), one on 1.30.

The suite starts a fleet beside the shared lab (tests/lab/fleet.py: "fleet", "fleet2" on Kubernetes 1.30 and
"fleet3", in a state dir of their own) and removes it afterwards, so stopping one of its API servers disturbs no
other suite; the domain is the lab's DC. The inventory's hosts lab, lab2 and lab3 are pointed at them by a second
inventory source that holds only their kubeconfigs. One module-scoped sequence: the first run converges all three
with their own applications, the rerun changes nothing, and a run during which fleet3's API server is killed (as
the cluster stage starts) converges the others while the recap names lab3 as failed.

5 minutes on the shared 2-core machine at load 3-5, 10 at load 7 (three site runs; 25 s to start the fleet).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.lab import COLLECTIONS_PATH, REPO_ROOT, fleet, kube

pytest_plugins = ("tests.lab.pytest_samba",)

INVENTORY = os.path.join(REPO_ROOT, "examples", "inventories", "lab-fleet")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
# The inventory's hosts and the suite's clusters they run on (member 2, lab2's, runs the older minor).
HOSTS = {"lab": 1, "lab2": 2, "lab3": 3}
# The credspecs each cluster's applications need (the inventory's host_vars): different on each.
CREDSPECS = {"lab": {"fleetweb01"}, "lab2": {"fleetapi01", "fleetjob01"}, "lab3": {"fleetweb01"}}
RECAP_LINE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def _recap(output):
    """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    return {host: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts))) for host, *counts in RECAP_LINE.findall(recap)}


def _kubectl_json(member_facts, *args):
    return json.loads(kube.kubectl(member_facts["state_dir"], member_facts["binaries"], *args, "-o", "json"))


@pytest.fixture(name="fleet_lab", scope="module")
def fixture_fleet_lab(samba_dc):
    """{inventory host: kube.up facts} of the suite's fleet, started fresh and removed after the module."""
    del samba_dc  # only needed running
    state_dir = fleet.suite_state_dir()
    # A fleet left by an interrupted run would carry its applications into the first run.
    fleet.down(state_dir, fleet.SUITE_CLUSTER)
    members = fleet.members(state_dir, len(HOSTS), fleet.SUITE_CLUSTER)
    try:
        yield {host: fleet.up_member(members[number - 1]) for host, number in HOSTS.items()}
    finally:
        fleet.down(state_dir, fleet.SUITE_CLUSTER)


@pytest.fixture(name="inventory", scope="module")
def fixture_inventory(fleet_lab, tmp_path_factory):
    """The fleet inventory, then a source whose host_vars point its hosts at the suite's clusters.

    Host_vars of a later inventory source win over an earlier one's (both are the "inventory host_vars/*" level of
    Ansible's variable precedence, loaded in source order: ansible/vars/plugins.py get_vars_from_inventory_sources).
    """
    overlay = tmp_path_factory.mktemp("fleet-inventory")
    (overlay / "host_vars").mkdir()
    (overlay / "hosts.yml").write_text("all:\n  children:\n    gmsa_clusters:\n      hosts: {%s}\n" % ", ".join("%s: {}" % host for host in HOSTS))
    for host, facts in fleet_lab.items():
        (overlay / "host_vars" / ("%s.yml" % host)).write_text(json.dumps({"gmsa_kubernetes": {"kubeconfig": facts["kubeconfig"]}}))
    return [INVENTORY, str(overlay)]


def _site(inventory, on_cluster_stage=None):
    """Run the site playbook over the fleet; on_cluster_stage runs once the cluster stage starts."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="true", PYTHONUNBUFFERED="1")
    command = [ANSIBLE_PLAYBOOK, "wincontainers.gmsa.site", "--forks", "4"]
    for source in inventory:
        command += ["-i", source]
    with subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        lines = []
        for line in run.stdout:
            lines.append(line)
            if on_cluster_stage and line.startswith("PLAY [Cluster"):
                on_cluster_stage()
                on_cluster_stage = None
        returncode = run.wait(timeout=1800)
    return returncode, "".join(lines)


def _stop_api_server(member_facts):
    """Kill the cluster's kube-apiserver (by the PID kwokctl recorded), as a cluster that went down."""
    # pylint: disable-next=protected-access
    tracked = kube._tracked_components(member_facts["state_dir"], member_facts["cluster"])
    pids = [pid for pid, binary in tracked.items() if binary == "kube-apiserver"]
    assert pids, "no kube-apiserver recorded for %s" % member_facts["cluster"]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(name="first_run", scope="module")
def fixture_first_run(inventory):
    return _site(inventory)


def test_lab2_runs_the_older_minor(fleet_lab):
    versions = {host: _kubectl_json(facts, "version")["serverVersion"] for host, facts in fleet_lab.items()}
    assert (versions["lab2"]["major"], versions["lab2"]["minor"]) == ("1", "30"), versions["lab2"]
    assert int(versions["lab"]["minor"]) > 30, versions["lab"]


def test_first_run_converges_every_cluster_with_its_own_applications(fleet_lab, first_run):
    returncode, output = first_run
    recap = _recap(output)
    assert returncode == 0, output[-6000:]
    assert set(recap) == {"localhost", *HOSTS}, recap
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in recap.values()), recap
    for host, facts in fleet_lab.items():
        credspecs = {item["metadata"]["name"] for item in _kubectl_json(facts, "get", "gmsacredentialspecs")["items"]}
        assert credspecs == CREDSPECS[host], (host, facts["cluster"], credspecs)
    # The domain stage ran once, on the domain host, for the union of the clusters' gMSAs.
    domain_tasks = re.findall(r"^(?:changed|ok): \[(\S+)\].*$", output.split("PLAY [Domain", 1)[1].split("PLAY [", 1)[0], re.MULTILINE)
    assert set(domain_tasks) == {"localhost"}, domain_tasks
    # The domain stage's task proved every identity's chain, once (domain_check_retrievals): the verify stage's own
    # check ran on no host, and each cluster reports its own gMSAs' only.
    verify_checks = [part.split("TASK [", 1)[0] for part in output.split("Authenticate as each identity")[1:]]
    assert verify_checks and not [part for part in verify_checks if re.search(r"^(?:changed|ok|failed|fatal): ", part, re.MULTILINE)], verify_checks
    report_task = output.split("Show the verification report", 1)[1].split("TASK [", 1)[0]
    reports = dict(re.findall(r"^ok: \[(\S+)\] => \{\n(.*?)^\}", report_task, re.MULTILINE | re.DOTALL))
    for host, credspecs in CREDSPECS.items():
        tickets = set(re.findall(r"(\w+) gets a Kerberos ticket", reports[host]))
        assert {name.lower() for name in tickets} == credspecs, (host, tickets)


def test_rerun_changes_nothing(inventory, first_run):
    assert first_run[0] == 0, "the first run failed"
    returncode, output = _site(inventory)
    recap = _recap(output)
    assert returncode == 0, output[-6000:]
    assert {host: counts["changed"] for host, counts in recap.items()} == dict.fromkeys(("localhost", *HOSTS), 0), recap


def test_a_stopped_cluster_fails_alone_and_is_named(fleet_lab, inventory, first_run):
    assert first_run[0] == 0, "the first run failed"
    returncode, output = _site(inventory, on_cluster_stage=lambda: _stop_api_server(fleet_lab["lab3"]))
    recap = _recap(output)
    assert returncode != 0, output[-6000:]
    assert recap["lab3"]["failed"] + recap["lab3"]["unreachable"] >= 1, recap
    for converged in ("localhost", "lab", "lab2"):
        assert recap[converged]["failed"] == 0 and recap[converged]["unreachable"] == 0, recap
    assert re.search(r"^fatal: \[lab3\]", output, re.MULTILINE), output[-6000:]
    # The others went on to the last stage: the verification ran on them, not on the stopped cluster.
    verification = output.split("PLAY [Verify", 1)[1]
    assert re.search(r"^ok: \[lab\]", verification, re.MULTILINE) and re.search(r"^ok: \[lab2\]", verification, re.MULTILINE)
    assert not re.search(r"\[lab3\]", verification), verification[-3000:]
