# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The site playbook as AWX / Automation Controller runs it: ansible-runner over a private data directory.

The directory is laid out as AWX lays out a job's: ``inventory/hosts`` a script that prints the inventory as
JSON, ``env/extravars`` the job template's extra variables plus those the portable identity credential injects,
``env/envvars`` the environment the credentials inject. The domain connection comes from the collection's AWX
credential type (extensions/awx/credential_types), rendered as AWX renders it; the cluster connection from AWX's
built-in "OpenShift or Kubernetes API Bearer Token" credential (K8S_AUTH_HOST, K8S_AUTH_API_KEY,
K8S_AUTH_VERIFY_SSL, K8S_AUTH_SSL_CA_CERT), with a token of a service account of the lab cluster. So nothing in
the inventory or the extra variables says how to reach AD or the cluster, as in AWX.

Against the lab (make lab-up): the Samba AD DC and the Kubernetes control plane. The run is at -vvv; no secret may
appear in any event or in stdout. The names are this test's own, so the demo's objects are left alone.

Run from the repository root: ``python -m pytest tests/integration/test_site_playbook.py -v``.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import sys

import ansible_runner
import pytest

from tests.integration.support import kubectl
from tests.lab import COLLECTIONS_PATH
from tests.awx_credentials import awx_inject, load

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube")

CREDENTIAL_TYPE = load("gmsa_domain_connection.yml")
IDENTITY_TYPE = load("gmsa_portable_identity.yml")
ACCOUNT = "ItestSite01"
NAMESPACE = "itest-site"
AWX_SERVICE_ACCOUNT = ("kube-system", "itest-awx-job")
# The job template's extra variables and the inventory's: names only, nothing about connections or secrets.
INVENTORY_VARS = {
    "gmsa_kds_root_key_lab_mode": True,
    "gmsa_domain_controllers": ["127.0.0.1"],
    "gmsa_accounts": [{"name": ACCOUNT, "service_accounts": [{"name": "itest-site-app", "namespace": NAMESPACE}]}],
    "webhook_name": "itest-site-webhook",
    "webhook_namespace": "itest-site-webhook",
    # The real windows-gmsa webhook, served by the lab kubelet, installed as in production (failurePolicy Fail, the
    # module waits until it is Available). Only the in-pod checks cannot run, as examples/inventories/lab says.
    "webhook_replicas": 1,
    "verify_not_verifiable": {"in_pod": "no Windows container runs in the lab"},
    "workload_name": "itest-site-sample",
}


class Secrets(tuple):
    """The values that must never show; their repr (in a failing test's report) does not show them either."""

    def __repr__(self):
        return f"<{len(self)} secrets>"


@pytest.fixture(name="awx_job", scope="module")
def fixture_awx_job(samba_dc, kube_lab, tmp_path_factory):
    """What a job of AWX gets: the private data directory, and the secrets that must never show."""
    namespace, name = AWX_SERVICE_ACCOUNT
    kubectl(kube_lab, "create", "serviceaccount", "-n", namespace, name)
    kubectl(kube_lab, "create", "clusterrolebinding", name, "--clusterrole=cluster-admin", f"--serviceaccount={namespace}:{name}")
    token = kubectl(kube_lab, "create", "token", "-n", namespace, name, "--duration=2h").strip()
    identity_password = secrets.token_urlsafe(18) + "-Aa1"

    private_data_dir = tmp_path_factory.mktemp("awx-job")
    (private_data_dir / "env").mkdir()
    (private_data_dir / "inventory").mkdir()
    (private_data_dir / "project").mkdir()
    domain_env = awx_inject(
        CREDENTIAL_TYPE,
        {
            "server": samba_dc["host"],
            "transport": "ldap",
            # No port and no CA certificate: AWX injects those variables empty, and the modules take them as unset.
            "username": f"{samba_dc['netbios_name']}\\{samba_dc['admin_user']}",
            "password": samba_dc["admin_password"],
            "auth": "ntlm",
            "tls": "none",
        },
        private_data_dir / "env",
    )[0]
    identity_vars = awx_inject(IDENTITY_TYPE, {"username": "its-ccg", "password": identity_password}, private_data_dir / "env")[1]
    ca_file = private_data_dir / "env" / "k8s_ca.crt"
    ca_file.write_text(pathlib.Path(kube_lab["ca_file"]).read_text())
    kube_env = {"K8S_AUTH_HOST": kube_lab["server"], "K8S_AUTH_API_KEY": token, "K8S_AUTH_VERIFY_SSL": "True", "K8S_AUTH_SSL_CA_CERT": str(ca_file)}
    env = dict(
        domain_env,
        **kube_env,
        KRB5_CONFIG=samba_dc["krb5_config"],
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        # The execution environment's tools: ansible-playbook of this virtual environment first.
        PATH=os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", ""))),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        # The lab API server is on loopback: a proxy of this machine must not carry its traffic.
        NO_PROXY="127.0.0.1,localhost",
    )
    (private_data_dir / "env" / "envvars").write_text(json.dumps(env))
    (private_data_dir / "env" / "extravars").write_text(json.dumps(identity_vars))
    inventory = {"all": {"hosts": ["localhost"], "vars": INVENTORY_VARS}, "_meta": {"hostvars": {"localhost": {"ansible_connection": "local"}}}}
    script = private_data_dir / "inventory" / "hosts"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(inventory) + "\nEOF\n")
    script.chmod(0o700)
    yield {"dir": private_data_dir, "secrets": Secrets((samba_dc["admin_password"], identity_password, token)), "lab": kube_lab}
    # What AWX keeps to itself: the injected credentials, and runner's record of the command with its environment.
    # The events and stdout stay for a look after a failure; the tests proved them free of secrets.
    shutil.rmtree(private_data_dir / "env")
    for command in private_data_dir.glob("artifacts/*/command"):
        command.unlink()
    kubectl(kube_lab, "delete", "clusterrolebinding", name, "--ignore-not-found")
    kubectl(kube_lab, "delete", "serviceaccount", "-n", namespace, name, "--ignore-not-found")


def run(job, playbook, ident, **extravars):
    """Run a playbook of the collection in the job's directory at -vvv; return the runner and its events."""
    runner = ansible_runner.run(
        private_data_dir=str(job["dir"]), playbook=playbook, ident=ident, verbosity=3, quiet=True, extravars=extravars or None,
    )
    return runner, list(runner.events)


def stats(events):
    return next(event["event_data"] for event in events if event["event"] == "playbook_on_stats")


def changed_tasks(events):
    return [event["event_data"]["task"] for event in events if event["event"] == "runner_on_ok" and event["event_data"]["res"].get("changed")]


def assert_no_secret(job, runner, events):
    texts = [json.dumps(event) for event in events] + [runner.stdout.read()]
    for secret in job["secrets"]:
        leaks = [text[:200] for text in texts if secret in text]
        assert not leaks, f"a secret appears in {len(leaks)} event(s) or stdout: {leaks[:1]}"


@pytest.fixture(name="first_run", scope="module")
def fixture_first_run(awx_job):
    runner, events = run(awx_job, "wincontainers.gmsa.site", "site-first")
    yield runner, events
    cleanup, cleanup_events = run(awx_job, "wincontainers.gmsa.cleanup", "cleanup", cleanup_domain=True)
    assert cleanup.status == "successful", cleanup.stdout.read()[-3000:]
    assert_no_secret(awx_job, cleanup, cleanup_events)


def test_first_run_creates_everything_and_verifies(first_run, awx_job):
    runner, events = first_run
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    # The lab's forest has its KDS root key from provisioning, so the gMSA task creates none.
    assert changed_tasks(events) == [
        "Ensure the portable identities and gMSAs are present",
        "Ensure the gMSA webhook and its CRD are present",
        "Ensure the credential specs, their RBAC and identity Secrets are present",
        "Ensure the workload running as the gMSA of credspec itestsite01 is present",
    ]
    assert stats(events)["changed"]["localhost"] == 4
    report = next(
        event["event_data"]["res"]["msg"]
        for event in events
        if event["event"] == "runner_on_ok" and event["event_data"].get("task") == "Show the verification report"
    )
    assert report[0].startswith("result: incomplete"), report
    assert not [line for line in report if line.startswith("FAILED")], report
    passed = [line for line in report if line.startswith("passed")]
    # logon, password, ticket, credspec vs AD, Windows node, DNS, and the real webhook's admission and refusal
    assert len(passed) == 8, report
    assert [line for line in passed if "webhook admits a pod of itest-site-app using itestsite01" in line], report
    assert [line for line in passed if "webhook refuses a pod of" in line and "using itestsite01" in line], report
    not_verifiable = [line for line in report if line.startswith("not verifiable here")]
    assert [line.split("  ")[1].split(":")[0] for line in not_verifiable] == ["nltest /parentdomain", "nltest /sc_verify", "klist get krbtgt"], report


def test_the_workload_runs_on_the_windows_node_as_the_gmsa(first_run, awx_job):
    lab = awx_job["lab"]
    pods = json.loads(kubectl(lab, "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=itest-site-sample", "-o", "json"))["items"]
    assert [pod["spec"]["nodeName"] for pod in pods] == ["lab-win-0"]
    assert pods[0]["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] == "itestsite01"
    assert pods[0]["spec"]["serviceAccountName"] == "itest-site-app"
    assert pods[0]["spec"]["dnsConfig"]["nameservers"] == ["127.0.0.1"]


def test_rerun_changes_nothing(first_run, awx_job):
    runner, events = run(awx_job, "wincontainers.gmsa.site", "site-rerun")
    assert runner.status == "successful", runner.stdout.read()[-5000:]
    assert stats(events)["changed"].get("localhost", 0) == 0, changed_tasks(events)


def test_no_secret_in_any_event_or_stdout(first_run, awx_job):
    runner, events = first_run
    assert_no_secret(awx_job, runner, events)
