"""Runs interrupted at random points: every rerun converges, nothing is duplicated or left behind.

Each round starts from nothing, starts a small site-like play (the portable identity, two gMSAs, the webhook and
two credspecs: the domain and cluster tasks of the site playbook, on the lab DC and on a cluster of the test's own)
and, at a random point of its work, sends SIGINT (Ctrl-C) or SIGKILL to the play's whole process group, as a terminal
or a killed job runner does (the module running at that moment goes too). The point is a task and an offset into it,
drawn over the task times of an uninterrupted run and counted from the task's banner, so that a loaded machine, which
stretches every task, still meets the points inside the play rather than after its end. Then:

- the rerun succeeds, and the run after it changes nothing;
- AD holds the identity and the two gMSAs, once each, and no other object of the round's names;
- the cluster holds exactly the objects an uninterrupted run makes (by kind, namespace and name), no others;
- removal leaves neither AD nor the cluster with anything of the round.

``WGMSA_CHAOS_RUNS`` sets the number of rounds (3 in ``make test``, 20 in ``make chaos``); the seed is printed
and ``WGMSA_CHAOS_SEED`` replays it (the same signals at the same offsets; the play's own timing still varies).

Faults (what the user sees; what the rerun did):

- SIGINT of ansible-playbook at a random point.
  Sees: `[ERROR]: User interrupted execution` (or nothing, when the play had finished).
  Rerun: completed the play; the run after it changed nothing; no duplicate or orphan in AD or the cluster.
- SIGKILL of ansible-playbook and its module at a random point.
  Sees: the play's output stops (rc -9).  Rerun: the same.
"""

import datetime
import json
import os
import random
import secrets
import signal
import subprocess
import threading
import time

import pytest
import yaml

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from tests.integration.support import kubectl, kubectl_json, own_cluster, playbook_command

pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")

RUNS = int(os.environ.get("WGMSA_CHAOS_RUNS", "3"))
SEED = int(os.environ.get("WGMSA_CHAOS_SEED") or secrets.randbits(32))
APPS = "chaos-apps"
WEBHOOK = {"name": "chaos-webhook", "namespace": "chaos-webhook", "wait_timeout": 120, "probe_namespace": APPS}
MANAGED = "app.kubernetes.io/managed-by=wincontainers.gmsa"
CLUSTER_KINDS = ("namespaces,customresourcedefinitions,clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
                 "validatingwebhookconfigurations,serviceaccounts,secrets,services,deployments,poddisruptionbudgets,rolebindings")


@pytest.fixture(name="lab", scope="module")
def fixture_lab():
    with own_cluster("chaos") as facts:
        kubectl(facts, "create", "namespace", APPS)
        kubectl(facts, "create", "serviceaccount", "-n", APPS, "app")
        yield facts


class Round:
    """One round's names, and the plays that build and remove what they name."""

    def __init__(self, lab, ldap_params, domain, number):
        self.prefix = "chs%s%d" % (secrets.token_hex(2), number)
        self.lab, self.ldap_params = lab, ldap_params
        self.identity, self.accounts = self.prefix + "id", [self.prefix + "a", self.prefix + "b"]
        self.password = "Chaos-Pa55w0rd!" + secrets.token_hex(4)
        credspecs = [{"account_name": account, "service_accounts": [{"name": "app", "namespace": APPS}], "identity_secret": {"name": "chaos-identity"}}
                     for account in self.accounts]
        identity = {"domain": domain["dns_name"], "username": self.identity, "password": self.password}
        self.site = [
            {"name": "identity", "wincontainers.gmsa.gmsa_identity": {"name": self.identity, "password": self.password}},
            {"name": "gMSAs", "wincontainers.gmsa.gmsa_account": {
                "accounts": [{"name": account, "allowed_to_retrieve_password": {"set": [self.identity]}} for account in self.accounts]}},
            {"name": "webhook", "wincontainers.gmsa.gmsa_webhook": WEBHOOK},
            {"name": "credspecs", "wincontainers.gmsa.gmsa_credspec": {"domain": domain, "identity": identity, "credspecs": credspecs}},
        ]
        self.cleanup = [
            {"wincontainers.gmsa.gmsa_credspec": {"credspecs": credspecs, "state": "absent"}},
            {"wincontainers.gmsa.gmsa_webhook": dict(WEBHOOK, state="absent", remove_crd=True)},
            {"wincontainers.gmsa.gmsa_account": {"accounts": [{"name": account, "state": "absent"} for account in self.accounts]}},
            {"wincontainers.gmsa.gmsa_identity": {"name": self.identity, "state": "absent"}},
        ]

    def _playbook(self, tasks):
        connection = {key: value for key, value in self.ldap_params.items() if value is not None}
        path = os.path.join(self.lab["state_dir"], "chaos-%s.yml" % secrets.token_hex(4))
        with open(path, "w", encoding="utf-8") as playbook:
            yaml.safe_dump([{
                "hosts": "localhost", "gather_facts": False,
                "module_defaults": {"group/wincontainers.gmsa.domain": connection, "group/wincontainers.gmsa.cluster": {"kubeconfig": self.lab["kubeconfig"]}},
                "tasks": tasks,
            }], playbook)
        return path

    def start(self, tasks, callback="ansible.posix.json", stderr=subprocess.PIPE):
        """ansible-playbook in a session (a process group) of its own, as a terminal's foreground job."""
        path = self._playbook(tasks)
        command, env = playbook_command(path, callback=callback)
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        process.playbook = path
        return process

    @staticmethod
    def finish(process, timeout):
        """Wait for the play (SIGKILL to its group after ``timeout``); remove its playbook, which holds the DC's
        connection options. Returns its stdout and stderr."""
        try:
            return process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            os.unlink(process.playbook)

    def play(self, tasks):
        """Run to the end: (rc, the json callback's stats for localhost, the output, [(task name, seconds it took)])."""
        process = self.start(tasks)
        stdout, stderr = self.finish(process, 600)
        report = json.loads(stdout) if stdout.strip() else {"stats": {}, "plays": [{"tasks": []}]}
        durations = [(task["task"]["name"], _seconds(task["task"]["duration"])) for task in report["plays"][0]["tasks"]]
        return process.returncode, report["stats"].get("localhost", {}), stdout + stderr, durations

    def interrupt(self, task, offset, signum):
        """Run the site play and send ``signum`` to its process group ``offset`` seconds after ``task`` starts (by its
        banner): a point in the play's work, whatever the machine's load. Returns whether the play had finished before,
        its return code and its output."""
        process = self.start(self.site, callback="default", stderr=subprocess.STDOUT)
        banner_seen, lines = threading.Event(), []

        def read():
            try:
                for line in process.stdout:
                    lines.append(line)
                    if line.startswith("TASK [%s]" % task):
                        banner_seen.set()
            finally:
                banner_seen.set()  # the play ended first

        reader = threading.Thread(target=read)
        reader.start()
        try:
            banner_seen.wait(300)
            time.sleep(offset)
            finished_first = process.poll() is not None
            if not finished_first:
                os.killpg(process.pid, signum)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            reader.join()
            os.unlink(process.playbook)
        return finished_first, process.returncode, "".join(lines)

    def ad_objects(self):
        """{sAMAccountName: count} of every AD object whose name starts with the round's prefix."""
        with open_domain_client(self.ldap_params) as client:
            base = client.domain_facts().distinguished_name
            # pylint: disable-next=protected-access  # a raw subtree search: whatever the round left, of any class
            entries = client._connection.search(base, "(sAMAccountName=%s*)" % self.prefix, ("sAMAccountName",), "subtree")
        names = [entry.values("sAMAccountName")[0].decode().lower() for entry in entries]
        return {name: names.count(name) for name in names}

    def cluster_objects(self):
        """(kind, namespace, name) of every object of the kinds the play writes that the collection labelled, and the
        credspecs (when the CRD is installed); the round's prefix in a name is written <round>, so rounds compare."""
        return sorted((kind, namespace, name.replace(self.prefix, "<round>")) for kind, namespace, name in cluster_objects(self.lab))

    def expected_ad_objects(self):
        return {name.lower(): 1 for name in [self.identity] + [account + "$" for account in self.accounts]}


def _seconds(duration):
    """A task's duration in the json callback's output (ISO start and end)."""
    start, end = (datetime.datetime.fromisoformat(duration[key].replace("Z", "+00:00")) for key in ("start", "end"))
    return (end - start).total_seconds()


def cluster_objects(lab):
    """(kind, namespace, name) of every object of the kinds the play writes that the collection labelled, and the
    credspecs (the CRD, when it is installed)."""
    items = kubectl_json(lab, "get", CLUSTER_KINDS, "--all-namespaces", "-l", MANAGED)["items"]
    crd_installed = any(item["kind"] == "CustomResourceDefinition" for item in items)
    items += kubectl_json(lab, "get", "gmsacredentialspecs")["items"] if crd_installed else []
    return sorted((item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]) for item in items)


def test_runs_interrupted_at_random_points_converge_on_rerun_without_duplicates_or_orphans(lab, ldap_params):
    print("\nchaos: %d rounds, seed %d (WGMSA_CHAOS_SEED=%d replays it)" % (RUNS, SEED, SEED))
    rng = random.Random(SEED)
    with open_domain_client(ldap_params) as client:
        facts = client.domain_facts()
    domain = {"dns_name": facts.dns_name, "netbios_name": facts.netbios_name, "sid": facts.sid, "guid": facts.guid}

    # One uninterrupted round: what a clean run makes, and how long each task takes (where the random points fall).
    reference = Round(lab, ldap_params, domain, 0)
    rc, _stats, output, durations = reference.play(reference.site)
    assert rc == 0, output
    expected_cluster = reference.cluster_objects()
    assert reference.ad_objects() == reference.expected_ad_objects()
    assert reference.play(reference.cleanup)[0] == 0
    assert cluster_objects(lab) == [] and reference.ad_objects() == {}
    print("clean run: %s" % ", ".join("%s %.1f s" % duration for duration in durations))

    for number in range(1, RUNS + 1):
        this = Round(lab, ldap_params, domain, number)
        point, signum = rng.uniform(0, sum(seconds for _name, seconds in durations)), rng.choice((signal.SIGINT, signal.SIGKILL))
        for task, seconds in durations:
            if point < seconds:
                break
            point -= seconds
        finished_first, returncode, output = this.interrupt(task, point, signum)
        print("round %d: %s %.1f s into task %s: rc %s; %s" % (
            number, "finished before" if finished_first else signal.Signals(signum).name, point, task, returncode,
            (output.strip().splitlines() or ["no output"])[-1]))
        assert finished_first or returncode != 0, output
        try:
            rc, _stats, output, _durations = this.play(this.site)
            assert rc == 0, "round %d rerun: %s" % (number, output)
            rc, stats, output, _durations = this.play(this.site)
            assert rc == 0 and stats["changed"] == 0, "round %d: the run after the rerun changed %s" % (number, output)
            assert this.ad_objects() == this.expected_ad_objects(), "round %d" % number
            assert this.cluster_objects() == expected_cluster, "round %d" % number
        finally:
            rc, _stats, output, _durations = this.play(this.cleanup)
        assert rc == 0, output
        assert cluster_objects(lab) == [] and this.ad_objects() == {}, "round %d left objects behind" % number
