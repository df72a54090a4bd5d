# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The path a new user takes, on the lab: ``ansible-playbook -i examples/inventories/lab wincontainers.gmsa.<playbook>``
with this suite's names in extra variables, as a user's own inventory would set them.

- A misspelt nested key fails the site playbook at its validation play, before AD or the cluster change.
- The dry run (``--check --diff``) of the site playbook, from a lab that holds none of this suite's objects, changes
  nothing in AD or in the cluster, and reports as changed exactly the steps the real run then changes, naming every
  object the real run creates (docs/dry-run.md shows its output).
- Cleanup never deletes an application's object: a namespace the collection created that also holds an object of
  the application stays, with only the collection's objects gone, and the run names what kept it; once the
  application's object is gone, the next cleanup deletes the namespace.

The suite installs a webhook of its own name, otherwise as the lab inventory sets it (the real windows-gmsa webhook,
failurePolicy Fail), so its cleanup leaves the demo's webhook alone. Run from the repository root:
``python -m pytest tests/integration/test_user_path.py -v`` (about 10 minutes on a busy 2-core machine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import secrets
import sys

import ansible_runner
import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from tests.integration.support import kubectl
from tests.lab import COLLECTIONS_PATH

# The lab DC and cluster, and the LDAP connection options to look at AD (ldap_params).
pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube", "tests.integration.wsman_endpoint")

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "examples" / "inventories" / "lab"
ACCOUNT = "ItestUser01"
CREDSPEC = "itestuser01"
IDENTITY = "itu-ccg"  # short: a prefix of per-namespace identity names must fit sAMAccountName
NAMESPACE = "itest-user"
SERVICE_ACCOUNT = "itest-user-app"
WEBHOOK = "itest-user-webhook"
WORKLOAD = "itest-user-sample"
NAMES = {"model": {
    "gmsa_identity_username": IDENTITY,
    "gmsa_accounts": [{"name": ACCOUNT, "service_accounts": [{"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]}],
    "workload_name": WORKLOAD,
    # This suite's own webhook (the lab serves it as it serves the demo's), so its cleanup leaves the demo's alone.
    "webhook_name": WEBHOOK,
    "webhook_namespace": WEBHOOK,
    "webhook_replicas": 1,
}}
# What the lab can list of this suite's objects; the CRD is shared, its objects are listed when it exists.
KINDS = "namespaces,serviceaccounts,secrets,configmaps,roles,rolebindings,clusterroles,clusterrolebindings,deployments,services," \
        "mutatingwebhookconfigurations,validatingwebhookconfigurations"


@pytest.fixture(name="user", scope="module")
def fixture_user(samba_dc, kube_lab, ldap_params, tmp_path_factory):
    """A user's run of the collection's playbooks: a private data directory with this suite's names."""
    password = f"Aa1-{secrets.token_urlsafe(18)}"
    user = {
        "dir": tmp_path_factory.mktemp("user"),
        "vars": dict(NAMES["model"], gmsa_identity_password=password),
        "secrets": (password, samba_dc["admin_password"]),
        "lab": kube_lab,
        "ldap_params": ldap_params,
    }
    # From a lab without this suite's objects, whatever an earlier, interrupted run left.
    runner = run(user, "wincontainers.gmsa.cleanup", extravars={"cleanup_domain": True})[0]
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    yield user
    run(user, "wincontainers.gmsa.cleanup", extravars={"cleanup_domain": True})
    kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")


def run(user, playbook, *cmdline, extravars=None):
    """ansible-playbook with the lab inventory and the suite's variables; the runner and its events.

    Each run gets a private data directory of its own: ansible-runner keeps a run's command line options in it
    (env/cmdline) and would apply them to the next run, turning the real run after a dry run into a dry run. The
    variables go in its env/extravars file, as AWX passes them, never on a command line other processes can read.
    """
    user["runs"] = user.get("runs", 0) + 1
    private_data_dir = user["dir"] / f"run-{user['runs']}"
    (private_data_dir / "env").mkdir(parents=True)
    variables = private_data_dir / "env" / "extravars"
    variables.write_text(json.dumps(dict(user["vars"], **(extravars or {}))))
    variables.chmod(0o600)
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        playbook=playbook,
        inventory=str(INVENTORY),
        cmdline=" ".join(cmdline) or None,
        envvars={
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH,
            "PATH": os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", ""))),
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "NO_PROXY": "127.0.0.1,localhost",
        },
        quiet=True,
    )
    return runner, list(runner.events)


def changed_tasks(events):
    return [event["event_data"]["task"] for event in events if event["event"] == "runner_on_ok" and event["event_data"]["res"].get("changed")]


def failed_tasks(events):
    return [event["event_data"]["task"] for event in events if event["event"] == "runner_on_failed"]


def ad_snapshot(user):
    """This suite's objects in AD, in full: the identity and the gMSA (none when absent)."""
    with open_domain_client(user["ldap_params"]) as client:
        return repr(client.find_user(IDENTITY)), repr(client.find_gmsas([ACCOUNT]))


def cluster_snapshot(user):
    """Every object of the cluster whose name or namespace is one of this suite's, with its resourceVersion."""
    lab = user["lab"]
    items = json.loads(kubectl(lab, "get", KINDS, "--all-namespaces", "-o", "json"))["items"]
    crds = json.loads(kubectl(lab, "get", "customresourcedefinitions", "-o", "json"))["items"]
    if any(crd["metadata"]["name"] == "gmsacredentialspecs.windows.k8s.io" for crd in crds):
        items += json.loads(kubectl(lab, "get", "gmsacredentialspecs", "-o", "json"))["items"]
    ours = ("itest-user", CREDSPEC)
    return sorted(
        (item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"], item["metadata"]["resourceVersion"])
        for item in items
        if any(mark in item["metadata"]["name"] or mark in item["metadata"].get("namespace", "") for mark in ours)
    )


def assert_no_secret(user, runner, events):
    texts = [json.dumps(event) for event in events] + [runner.stdout.read()]
    for secret in user["secrets"]:
        assert not [text for text in texts if secret in text], "a secret shows in the output"


def test_a_misspelt_nested_key_fails_before_anything_changes(user):
    before = ad_snapshot(user), cluster_snapshot(user)
    typo = {"gmsa_accounts": [{"name": ACCOUNT, "service_accounts": [{"name": SERVICE_ACCOUNT, "namspace": NAMESPACE}]}]}
    runner, events = run(user, "wincontainers.gmsa.site", extravars=typo)
    assert runner.status == "failed"
    assert failed_tasks(events) == ["Validate the variables of each stage's role against its argument spec"]
    # Whichever check meets it first (a filter of the variable model, or a role's argument spec), the message names
    # the entry's service_accounts and its namespace.
    output = runner.stdout.read()
    assert re.search(r"service_accounts\S*\.nam\w*space\b", output), output[-3000:]
    assert not changed_tasks(events)
    assert (ad_snapshot(user), cluster_snapshot(user)) == before


@pytest.fixture(name="dry_then_real", scope="module")
def fixture_dry_then_real(user):
    """The site playbook with --check --diff on a lab without this suite's objects, then for real."""
    before = ad_snapshot(user), cluster_snapshot(user)
    dry = run(user, "wincontainers.gmsa.site", "--check", "--diff")
    after_dry_run = ad_snapshot(user), cluster_snapshot(user)
    real = run(user, "wincontainers.gmsa.site")
    return {"before": before, "after_dry_run": after_dry_run, "dry": dry, "real": real}


def test_the_dry_run_changes_nothing(dry_then_real):
    runner, events = dry_then_real["dry"]
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    before = dry_then_real["before"]
    assert before[0] == (repr(None), repr({})), "the lab held this suite's AD objects before the dry run"
    assert before[1] == [], "the lab held this suite's objects before the dry run"
    assert dry_then_real["after_dry_run"] == before


def test_the_dry_run_reports_the_steps_the_real_run_takes(dry_then_real):
    (dry, dry_events), (real, real_events) = dry_then_real["dry"], dry_then_real["real"]
    assert real.status == "successful", real.stdout.read()[-5000:]
    predicted = changed_tasks(dry_events)
    assert predicted == changed_tasks(real_events)
    assert {
        "Ensure the portable identities and gMSAs are present",
        "Ensure the gMSA webhook and its CRD are present",
        "Ensure the credential specs, their RBAC and identity Secrets are present",
        f"Ensure the workload running as the gMSA of credspec {CREDSPEC} is present",
    } <= set(predicted), predicted


def test_the_dry_run_names_every_object_the_real_run_creates(dry_then_real, user):
    output = dry_then_real["dry"][0].stdout.read()
    # What Kubernetes itself puts in every namespace is not the collection's to name.
    created = [item[2] for item in cluster_snapshot(user) if item[2] not in ("default", "kube-root-ca.crt")]
    assert {NAMESPACE, SERVICE_ACCOUNT, CREDSPEC, f"gmsa-use-{CREDSPEC}", WORKLOAD, WEBHOOK} <= set(created), created
    missing = [name for name in created + [IDENTITY, ACCOUNT] if name not in output]
    assert not missing, f"the dry run does not name {missing}"


def test_no_secret_in_the_dry_run_or_the_real_run(dry_then_real, user):
    for runner, events in (dry_then_real["dry"], dry_then_real["real"]):
        assert_no_secret(user, runner, events)


def new_credential_spec_file(path, facts, account, **host_account_config):
    """A file as New-CredentialSpec -AccountName ACCOUNT -Path PATH writes it: Out-File's UTF-16 with a byte order mark."""
    spec = {
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {"Sid": facts.sid, "MachineAccountName": account, "Guid": facts.guid, "DnsTreeName": facts.dns_tree_name,
                             "DnsName": facts.dns_name, "NetBiosName": facts.netbios_name},
        "ActiveDirectoryConfig": {"GroupManagedServiceAccounts": [{"Name": account, "Scope": facts.dns_name}, {"Name": account, "Scope": facts.netbios_name}]},
    }
    if host_account_config:
        spec["ActiveDirectoryConfig"]["HostAccountConfig"] = host_account_config
    path.write_text(json.dumps(spec, indent=4), encoding="utf-16")
    return path


def test_an_existing_credential_spec_and_the_plugin_of_a_credspec_in_the_cluster(dry_then_real, user, tmp_path):
    """Add-AksHciGMSACredentialSpec -credSpecFilePath, with the plugin CLSID taken from a credspec AKS-HCI made."""
    lab = user["lab"]
    with open_domain_client(user["ldap_params"]) as client:
        facts = client.domain_facts()
    # What Add-AksHciGMSACredentialSpec left in a cluster (the plugin it names is the one Microsoft does not publish).
    aks_hci_plugin = {
        "PortableCcgVersion": "1",
        "PluginGUID": "{E4781092-F116-4B79-B55E-28EB6A224E26}",
        "PluginInput": "SecretName=gmsa;SecretNamespace=default",
    }
    made_by_aks_hci = {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": "itest-user-akshci"},
                       "credspec": {"CmsPlugins": ["ActiveDirectory"], "DomainJoinConfig": {"MachineAccountName": "Other01"},
                                    "ActiveDirectoryConfig": {"HostAccountConfig": aks_hci_plugin}}}
    kubectl(lab, "create", "-f", "-", stdin=json.dumps(made_by_aks_hci))
    good = new_credential_spec_file(tmp_path / "good.json", facts, ACCOUNT)
    wrong_sid = facts.sid.rsplit("-", 1)[0] + "-1"
    bad = new_credential_spec_file(tmp_path / "bad.json", dataclasses.replace(facts, sid=wrong_sid), ACCOUNT)
    play = tmp_path / "byo.yml"

    def credspec_play(spec_file, name):
        play.write_text(json.dumps([{
            "hosts": "localhost", "gather_facts": False,
            "module_defaults": {"group/wincontainers.gmsa.domain": "{{ gmsa_domain_connection }}", "group/wincontainers.gmsa.cluster": "{{ gmsa_kubernetes }}"},
            "tasks": [
                {"name": "Domain facts", "wincontainers.gmsa.gmsa_domain_info": {}, "register": "ad"},
                {"name": "The credspec from the file, with the AKS-HCI plugin", "wincontainers.gmsa.gmsa_credspec": {
                    "domain": "{{ ad.domain }}",
                    "credspecs": [{"account_name": ACCOUNT, "name": name, "spec_file": str(spec_file),
                                   "service_accounts": [{"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
                                   "host_account_config": {"from_credspec": "itest-user-akshci"}}],
                }},
            ],
        }]))
        return run(user, str(play))

    try:
        runner = credspec_play(bad, "itest-user-byo-bad")[0]
        assert runner.status == "failed"
        expected = f"credspecs[0].spec_file: does not match the gMSA and its domain: DomainJoinConfig.Sid is '{wrong_sid}', expected '{facts.sid}'"
        assert expected in runner.stdout.read()
        assert not [item for item in cluster_snapshot(user) if item[2] == "itest-user-byo-bad"]

        runner = credspec_play(good, "itest-user-byo")[0]
        assert runner.status == "successful", runner.stdout.read()[-3000:]
        live = json.loads(kubectl(lab, "get", "gmsacredentialspec", "itest-user-byo", "-o", "json"))["credspec"]
        assert live["ActiveDirectoryConfig"]["HostAccountConfig"] == aks_hci_plugin
        assert live["DomainJoinConfig"]["Sid"] == facts.sid and live["DomainJoinConfig"]["MachineAccountName"] == ACCOUNT
    finally:
        kubectl(lab, "delete", "gmsacredentialspec", "itest-user-byo", "itest-user-akshci", "--ignore-not-found")
        kubectl(lab, "delete", "clusterrole", "gmsa-use-itest-user-byo", "--ignore-not-found")
        kubectl(lab, "delete", "rolebinding", "-n", NAMESPACE, "gmsa-use-itest-user-byo", "--ignore-not-found")


def verification_report(events):
    return next(event["event_data"]["res"]["msg"] for event in events
                if event["event"] == "runner_on_ok" and event["event_data"]["task"] == "Show the verification report")


def test_verify_on_its_own_builds_the_credspecs_and_fails_the_in_pod_checks_it_could_not_run(dry_then_real, user):
    # The site run compared the cluster with the credspecs its cluster stage built; on its own, the verify playbook
    # builds them with a dry run of gmsa_credspec.
    runner, events = run(user, "wincontainers.gmsa.verify")
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    ran = [event["event_data"]["task"] for event in events if event["event"] == "runner_on_ok"]
    assert "Build each credential spec from the live domain facts, as the cluster stage would (server-side dry run)" in ran
    report = verification_report(events)
    assert [line for line in report if line.startswith("passed") and f"credspec {CREDSPEC} matches Active Directory" in line], report

    # Without the lab's declaration that no Windows container runs, the in-pod checks run, and fail: the lab's
    # kubelet (kwok) runs no container to exec in.
    runner, events = run(user, "wincontainers.gmsa.verify", extravars={"verify_not_verifiable": {}})
    assert runner.status == "failed"
    report = verification_report(events)
    failed = [line.split(None, 1)[1].split(":")[0] for line in report if line.startswith("FAILED")]
    assert failed == ["nltest /parentdomain", "nltest /sc_verify", "klist get krbtgt"], report
    assert all("could not run in the pod" in line for line in report if line.startswith("FAILED")), report


def test_cleanup_keeps_a_namespace_that_holds_an_application_object(dry_then_real, user):
    lab = user["lab"]
    assert json.loads(kubectl(lab, "get", "namespace", NAMESPACE, "-o", "json"))["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa"
    kubectl(lab, "create", "configmap", "app-settings", "-n", NAMESPACE, "--from-literal=greeting=hello")

    runner, events = run(user, "wincontainers.gmsa.cleanup", extravars={"cleanup_domain": True})
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    assert json.loads(kubectl(lab, "get", "configmap", "app-settings", "-n", NAMESPACE, "-o", "json"))["data"] == {"greeting": "hello"}
    left = [(kind, name) for kind, namespace, name, _version in cluster_snapshot(user) if namespace == NAMESPACE or kind == "Namespace"]
    assert sorted(left) == [("ConfigMap", "app-settings"), ("ConfigMap", "kube-root-ca.crt"), ("Namespace", NAMESPACE), ("ServiceAccount", "default")], left
    kept = [
        event["event_data"]["res"]
        for event in events
        if event["event"] == "runner_on_ok" and event["event_data"]["task"] == "Ensure the namespaces and service accounts of the workloads, state absent"
    ]
    assert kept and kept[0]["kept_namespaces"] == [{"name": NAMESPACE, "objects": ["ConfigMap/app-settings"]}], kept
    assert any(f"namespace {NAMESPACE} was created by the collection but is kept" in warning for warning in kept[0]["warnings"]), kept

    kubectl(lab, "delete", "configmap", "app-settings", "-n", NAMESPACE)
    runner, events = run(user, "wincontainers.gmsa.cleanup")
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    assert "Ensure the namespaces and service accounts of the workloads, state absent" in changed_tasks(events)
    assert [item for item in cluster_snapshot(user) if item[0] == "Namespace" and item[2] == NAMESPACE] == []
