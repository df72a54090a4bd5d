# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The site playbook on a fleet of three lab clusters (examples/inventories/lab-fleet), one on the older minor.

The lab's own cluster and two more beside it (tests/lab/fleet.py: lab2 runs Kubernetes 1.30, lab3 the current
release), each with its own applications, the domain stage once for all of them. One module-scoped sequence:
the first run converges all three, the rerun changes nothing, and a run during which lab3's API server is
stopped (killed as the cluster stage starts) converges lab and lab2 while the recap names lab3 as failed.

Three site runs on the shared machine: ~10 minutes.
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

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube")

INVENTORY = os.path.join(REPO_ROOT, "examples", "inventories", "lab-fleet")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
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
def fixture_fleet_lab(samba_dc, kube_lab):
    """{cluster name: kube.up facts} for the three clusters of examples/inventories/lab-fleet."""
    del samba_dc  # only needed running
    clusters = {"lab": kube_lab}
    for number in (2, 3):
        member = fleet.member(kube_lab["state_dir"], number)
        clusters[member.name] = fleet.up_member(member)
    return clusters


def _site(state_dir, on_cluster_stage=None):
    """Run the site playbook over the fleet inventory; on_cluster_stage runs once the cluster stage starts."""
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        WGMSA_LAB_DIR=state_dir,
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_NOCOLOR="true",
        PYTHONUNBUFFERED="1",
    )
    command = [ANSIBLE_PLAYBOOK, "-i", INVENTORY, "wincontainers.gmsa.site", "--forks", "4"]
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
def fixture_first_run(fleet_lab):
    return _site(fleet_lab["lab"]["state_dir"])


def test_lab2_runs_the_older_minor(fleet_lab):
    versions = {name: _kubectl_json(facts, "version")["serverVersion"] for name, facts in fleet_lab.items()}
    assert (versions["lab2"]["major"], versions["lab2"]["minor"]) == ("1", "30"), versions["lab2"]
    assert int(versions["lab"]["minor"]) > 30, versions["lab"]


def test_first_run_converges_every_cluster_with_its_own_applications(fleet_lab, first_run):
    returncode, output = first_run
    recap = _recap(output)
    assert returncode == 0, output[-6000:]
    assert set(recap) == {"localhost", "lab", "lab2", "lab3"}, recap
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in recap.values()), recap
    for name, facts in fleet_lab.items():
        credspecs = {item["metadata"]["name"] for item in _kubectl_json(facts, "get", "gmsacredentialspecs")["items"]}
        fleet_credspecs = {credspec for credspec in credspecs if credspec.startswith("fleet")}
        assert fleet_credspecs == CREDSPECS[name], (name, credspecs)
    # The domain stage ran once, on the domain host, for the union of the clusters' gMSAs.
    domain_tasks = re.findall(r"^(?:changed|ok): \[(\S+)\].*$", output.split("PLAY [Domain", 1)[1].split("PLAY [", 1)[0], re.MULTILINE)
    assert set(domain_tasks) == {"localhost"}, domain_tasks


def test_rerun_changes_nothing(fleet_lab, first_run):
    assert first_run[0] == 0, "the first run failed"
    returncode, output = _site(fleet_lab["lab"]["state_dir"])
    recap = _recap(output)
    assert returncode == 0, output[-6000:]
    assert {host: counts["changed"] for host, counts in recap.items()} == dict.fromkeys(("localhost", "lab", "lab2", "lab3"), 0), recap


def test_a_stopped_cluster_fails_alone_and_is_named(fleet_lab, first_run):
    assert first_run[0] == 0, "the first run failed"
    try:
        returncode, output = _site(fleet_lab["lab"]["state_dir"], on_cluster_stage=lambda: _stop_api_server(fleet_lab["lab3"]))
    finally:
        fleet.up_member(fleet.member(fleet_lab["lab"]["state_dir"], 3))
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
