# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Races on the lab: two runs at once end as one run would, with nothing duplicated.

Each race starts two ansible-playbook processes at the same moment, as two operators (or two AWX jobs) would:
- two ``gmsa_account`` batches on overlapping gMSAs, created, changed and deleted at once, over ``ldap`` and over
  ``winrm`` (the WS-Management double runs each command with its own LDAP connection, as Windows runs each in a
  powershell.exe of its own);
- two ``gmsa_credspec`` tasks on overlapping entries, created and deleted at once;
- two site playbook runs of one inventory, from nothing.

A run may fail only with a conflict (the object appeared or went between its read and its write), and then a
rerun of it succeeds. Afterwards AD and the cluster hold exactly what one run makes (for the site: the same
objects as a single run made, compared by kind, namespace and name), and a further run changes nothing.
The names are this suite's own (``rc...`` gMSAs, ``itest-race`` objects), so other suites are left alone.

    python -m pytest tests/integration/test_races.py -v
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading

import pytest
import yaml

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import DOMAIN_CONNECTION_ARGUMENT_SPEC, open_domain_client
from tests.integration.support import kubectl, kubectl_json, run_play
from tests.lab import COLLECTIONS_PATH

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube", "tests.integration.wsman_endpoint")

# What a run that lost a race to the other one may say: its write met an object that had appeared (LDAP
# entryAlreadyExists, HTTP 409 AlreadyExists) or gone (LDAP noSuchObject; the AD cmdlets' ADIdentityNotFoundException)
# since it read, or a stale resourceVersion.
CONFLICT = re.compile(r"already exists|no such object|Cannot find an object with identity|the object has been modified|\bConflict\b", re.IGNORECASE)
NAMESPACE = "itest-race"
CRD_NAME = "gmsacredentialspecs.windows.k8s.io"


def at_once(*calls):
    """Run the calls in threads released together; their results in order."""
    start = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        start.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_lost_only_to_a_conflict(play):
    """A run of a race either succeeded or failed with a conflict; True when it failed."""
    if play.rc == 0:
        return False
    failures = [result.get("msg", "") for result in play.results if result.get("failed")]
    assert failures and all(CONFLICT.search(message) for message in failures), play.output[-3000:]
    return True


def race(lab, *task_lists):
    """Run each task list as a play of its own, all at once; rerun those that lost a conflict. The plays' results."""
    plays = at_once(*(lambda tasks=tasks: run_play(lab, tasks) for tasks in task_lists))
    for index, play in enumerate(plays):
        if assert_lost_only_to_a_conflict(play):
            print(f"run {index} lost a race:", *(result["msg"] for result in play.results if result.get("failed")))  # shown by pytest -rP
            plays[index] = run_play(lab, task_lists[index])
            assert plays[index].rc == 0, plays[index].output[-3000:]
    return plays


# --- gmsa_account: two batches on overlapping gMSAs, both transports ---------------------------------------------


def connection(params):
    return {key: value for key, value in params.items() if key in DOMAIN_CONNECTION_ARGUMENT_SPEC and value is not None}


def account_task(params, names, **settings):
    return {"wincontainers.gmsa.gmsa_account": dict(connection(params), accounts=[dict(settings, name=name) for name in names])}


def gmsa_entries(ldap_params, prefix):
    """Every gMSA whose sAMAccountName starts with ``prefix``: [(sAMAccountName, description)], one per AD object."""
    with open_domain_client(ldap_params) as client:
        entries = client._search(
            "listing the race's gMSAs", client.domain_facts().distinguished_name,
            f"(&(objectClass=msDS-GroupManagedServiceAccount)(sAMAccountName={prefix}*))", ("sAMAccountName", "description"),
        )
    return sorted((entry.values("sAMAccountName")[0].decode(), (entry.values("description") or [b""])[0].decode()) for entry in entries)


def test_two_account_batches_on_overlapping_gmsas_at_once(kube_lab, params, ldap_params):
    prefix = ("rw" if params["domain_transport"] == "winrm" else "rl") + secrets.token_hex(3)
    first, second = [f"{prefix}{i}" for i in (0, 1, 2)], [f"{prefix}{i}" for i in (2, 1, 3)]
    everyone = sorted(set(first) | set(second))
    try:
        plays = race(kube_lab, [account_task(params, first, description="race")], [account_task(params, second, description="race")])
        assert all(play.rc == 0 for play in plays)
        assert gmsa_entries(ldap_params, prefix) == [(f"{name}$", "race") for name in everyone]
        # Both change the overlapping accounts the same way at once.
        race(kube_lab, [account_task(params, first, description="raced")], [account_task(params, second, description="raced")])
        assert gmsa_entries(ldap_params, prefix) == [(f"{name}$", "raced") for name in everyone]
        again = run_play(kube_lab, [account_task(params, everyone, description="raced")])
        assert again.rc == 0 and again.result["changed"] is False, again.output[-3000:]
        # Both delete the overlapping accounts at once.
        race(kube_lab, [account_task(params, first, state="absent")], [account_task(params, second, state="absent")])
        assert gmsa_entries(ldap_params, prefix) == []
    finally:
        run_play(kube_lab, [account_task(ldap_params, everyone, state="absent")])


# --- gmsa_credspec: two tasks on overlapping entries ---------------------------------------------------------------

DOMAIN = {
    "dns_name": "race.example",
    "netbios_name": "RACE",
    "sid": "S-1-5-21-1004336348-1177238915-682003331",
    "guid": "7a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e",
}


@pytest.fixture(name="race_cluster")
def fixture_race_cluster(kube_lab):
    """The CRD (installed for the test when no other suite has it) and the namespace of this suite."""
    installed = not kubectl(kube_lab, "get", "crd", "--ignore-not-found", "-o", "name", CRD_NAME).strip()
    if installed:
        kubectl(kube_lab, "apply", "--server-side", "-f", "-", stdin=json.dumps(crd()))
        kubectl(kube_lab, "wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    kubectl(kube_lab, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
    yield kube_lab
    kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
    if installed and not kubectl_json(kube_lab, "get", "gmsacredentialspecs")["items"]:
        kubectl(kube_lab, "delete", "crd", CRD_NAME, "--ignore-not-found")


def credspec_task(names, **options):
    entries = [{"account_name": name, "service_accounts": [{"name": f"{name.lower()}-app", "namespace": NAMESPACE}]} for name in names]
    identity = {"username": "race-identity", "password": "Race-Identity-Pa55!"}
    return {"wincontainers.gmsa.gmsa_credspec": dict({"domain": DOMAIN, "identity": identity, "credspecs": entries}, **options)}


def credspec_objects(lab, prefix):
    """This race's credspecs, ClusterRoles, RoleBindings and identity Secrets, as (kind, name) pairs."""
    found = []
    for kind, namespace in (("gmsacredentialspecs", None), ("clusterroles", None), ("rolebindings", NAMESPACE), ("secrets", NAMESPACE)):
        items = kubectl_json(lab, "get", kind, *(["-n", namespace] if namespace else []))["items"]
        found += [(item["kind"], item["metadata"]["name"]) for item in items if prefix in item["metadata"]["name"] or item["kind"] == "Secret"]
    return sorted(found)


def test_two_credspec_tasks_on_overlapping_entries_at_once(race_cluster, kube_lab):
    prefix = f"rc{secrets.token_hex(3)}"
    first, second = [f"{prefix}{i}" for i in (0, 1, 2)], [f"{prefix}{i}" for i in (2, 1, 3)]
    everyone = sorted(set(first) | set(second))
    try:
        race(kube_lab, [credspec_task(first)], [credspec_task(second)])
        raced = credspec_objects(kube_lab, prefix)
        # What one task for every entry makes, and nothing it would not: a rerun of it changes nothing.
        single = run_play(kube_lab, [credspec_task(everyone)])
        assert single.rc == 0 and single.result["changed"] is False, single.output[-3000:]
        assert raced == credspec_objects(kube_lab, prefix)
        assert [name for kind, name in raced if kind == "GMSACredentialSpec"] == [name.lower() for name in everyone]
        assert [name for kind, name in raced if kind == "Secret"] == ["gmsa-identity"]
        race(kube_lab, [credspec_task(first, state="absent")], [credspec_task(second, state="absent")])
        assert credspec_objects(kube_lab, prefix) == []
    finally:
        run_play(kube_lab, [credspec_task(everyone, state="absent")])


# --- two site runs of one inventory ------------------------------------------------------------------------------

SITE_NAMES = ("itest-race-site", "itestrace01", "ItestRace01", "itest-racer")
SITE_KINDS = (
    "namespaces,serviceaccounts,secrets,services,deployments,poddisruptionbudgets,rolebindings,clusterroles,clusterrolebindings,"
    "mutatingwebhookconfigurations,validatingwebhookconfigurations,gmsacredentialspecs"
)


class SiteRun:
    """One ansible-playbook run of a playbook of the collection: return code, output, failed tasks, changed count."""

    def __init__(self, process):
        self.rc = process.returncode
        self.output = process.stdout + process.stderr
        document = json.loads(process.stdout[process.stdout.index("{"):]) if "{" in process.stdout else {"plays": [], "stats": {}}
        tasks = [task["hosts"].get("localhost", {}) for play in document["plays"] for task in play["tasks"]]
        self.results = [result for result in tasks if result.get("failed")]
        self.changed = document["stats"].get("localhost", {}).get("changed")


@pytest.fixture(name="site_inventory")
def fixture_site_inventory(samba_dc, kube_lab, tmp_path):
    """An inventory of this suite's own names, for the lab."""
    variables = {
        "gmsa_domain_connection": {
            "domain_transport": "ldap", "domain_server": samba_dc["host"], "domain_auth": "ntlm", "domain_tls": "none",
            "domain_username": f"{samba_dc['netbios_name']}\\{samba_dc['admin_user']}", "domain_password": samba_dc["admin_password"],
            "domain_krb5_config": samba_dc["krb5_config"],
        },
        "gmsa_kds_root_key_lab_mode": True,
        "gmsa_domain_controllers": ["127.0.0.1"],
        "gmsa_identity_username": "itest-racer",
        "gmsa_identity_password": secrets.token_urlsafe(18) + "-Aa1",
        "gmsa_kubernetes": {"kubeconfig": kube_lab["kubeconfig"]},
        "gmsa_accounts": [{"name": "ItestRace01", "service_accounts": [{"name": "itest-race-app", "namespace": "itest-race-site"}]}],
        "webhook_name": "itest-race-webhook",
        "webhook_namespace": "itest-race-webhook",
        "webhook_replicas": 1,
        "verify_not_verifiable": {"in_pod": "no Windows container runs in the lab"},
        "workload_name": "itest-race-sample",
    }
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}, "vars": variables}}))
    inventory.chmod(0o600)
    yield inventory
    site(inventory, "wincontainers.gmsa.cleanup", "-e", "cleanup_domain=true")


def site(inventory, playbook, *options):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        NO_PROXY="127.0.0.1,localhost",
    )
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), playbook, *options]
    return SiteRun(subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1200))


def site_objects(lab, ldap_params):
    """What the site of this inventory made, by kind, namespace and name: cluster objects, and AD objects by sAMAccountName."""
    items = kubectl_json(lab, "get", SITE_KINDS, "--all-namespaces")["items"]
    found = [
        (item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"])
        for item in items
        if any(name.lower() in (item["metadata"].get("namespace") or "") + "/" + item["metadata"]["name"] for name in SITE_NAMES + ("itest-race-webhook",))
    ]
    with open_domain_client(ldap_params) as client:
        entries = client._search(
            "listing the site's AD objects", client.domain_facts().distinguished_name,
            "(|(sAMAccountName=ItestRace01$)(sAMAccountName=itest-racer))", ("sAMAccountName",),
        )
    found += [("AD", None, entry.values("sAMAccountName")[0].decode()) for entry in entries]
    return sorted(found)


def test_two_site_runs_at_once_make_what_one_run_makes(site_inventory, kube_lab, ldap_params):
    single = site(site_inventory, "wincontainers.gmsa.site")
    assert single.rc == 0, single.output[-5000:]
    one_run = site_objects(kube_lab, ldap_params)
    assert ("AD", None, "ItestRace01$") in one_run and ("GMSACredentialSpec", None, "itestrace01") in one_run
    cleanup = site(site_inventory, "wincontainers.gmsa.cleanup", "-e", "cleanup_domain=true")
    assert cleanup.rc == 0, cleanup.output[-5000:]
    assert site_objects(kube_lab, ldap_params) == []

    runs = at_once(lambda: site(site_inventory, "wincontainers.gmsa.site"), lambda: site(site_inventory, "wincontainers.gmsa.site"))
    for index, run in enumerate(runs):
        if assert_lost_only_to_a_conflict(run):
            print(f"site run {index} lost a race:", *(result["msg"] for result in run.results))  # shown by pytest -rP
            rerun = site(site_inventory, "wincontainers.gmsa.site")
            assert rerun.rc == 0, rerun.output[-5000:]
    assert site_objects(kube_lab, ldap_params) == one_run
    again = site(site_inventory, "wincontainers.gmsa.site")
    assert again.rc == 0 and again.changed == 0, again.output[-5000:]
