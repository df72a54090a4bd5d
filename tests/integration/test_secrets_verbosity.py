# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""No secret at -vvv: the site playbook, a run that fails and the cleanup (with cleanup_domain), through
ansible-playbook with the JSON callback and ANSIBLE_LOG_PATH, against the lab's DC and Kubernetes control plane.

The cluster connection is an inline kubeconfig (a mapping in ``gmsa_kubernetes.kubeconfig``) holding the lab
admin's client key; the failing run reaches the cluster with a service account's bearer token instead
(``K8S_AUTH_API_KEY``, as AWX injects it), whose account may only view, so it fails installing the webhook.
Searched for, in stdout, stderr and the log file of every run: the domain administrator's and the portable
identity's passwords, the bearer token, the kubeconfig's client key and certificate data, and the private keys of
the webhook's CA and serving certificate as the site left them in the cluster; PEM values each as a whole and
as body lines. One site run serves every assertion. The names are this test's own (``itest-sec``, ``itest-vsec``),
so the demo's and other suites' objects are left alone.

    python -m pytest tests/integration/test_secrets_verbosity.py -v
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys

import pytest
import yaml

from tests.integration.support import kubectl
from tests.lab import COLLECTIONS_PATH

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube")

WEBHOOK = "itest-sec-webhook"
SITE_WEBHOOK = "itest-vsec-webhook"
VIEWER = ("kube-system", "itest-vsec-viewer")


class Secrets(list):
    """The values that must never show; their repr (in a failing test's report) does not show them either."""

    def __repr__(self):
        return f"<{len(self)} secrets>"


def _pem_parts(data: str) -> list[str]:
    """A base64-encoded PEM (as Secrets and kubeconfigs hold it), its PEM text, and each of its body lines."""
    pem = base64.b64decode(data).decode()
    return [data, pem, *(line for line in pem.splitlines() if line and not line.startswith("-----"))]


def _inline(path):
    """The lab's kubeconfig with the files it names (client key, certificates) inlined as *-data, as users paste it."""
    with open(path, encoding="utf-8") as handle:
        kubeconfig = yaml.safe_load(handle)
    for section, entries in (("users", "user"), ("clusters", "cluster")):
        for entry in kubeconfig[section]:
            for key in ("client-key", "client-certificate", "certificate-authority"):
                if key in entry[entries]:
                    with open(entry[entries].pop(key), "rb") as handle:
                        entry[entries][f"{key}-data"] = base64.b64encode(handle.read()).decode()
    return kubeconfig


def run(directory, variables, playbook, *options, **environment):
    """ansible-playbook at -vvv with the JSON callback and a log file: (return code, every text it wrote)."""
    log = directory / f"{playbook.rsplit('.', 1)[-1]}-{len(list(directory.glob('*.log')))}.log"
    env = dict(
        os.environ,
        **environment,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOG_PATH=str(log),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        NO_PROXY="127.0.0.1,localhost",
        TMPDIR=str(directory),
    )
    # Nothing may come from the environment: the inline kubeconfig is the only way to the cluster.
    for name in ("K8S_AUTH_KUBECONFIG", "KUBECONFIG"):
        env.pop(name, None)
    command = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "-i", "localhost,", "-c", "local",
        "-e", f"@{variables}", *options, playbook,
    ]
    process = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1200)
    return process.returncode, [process.stdout, process.stderr, log.read_text() if log.exists() else ""]


def assert_no_secret(values, texts):
    for secret in values:
        leaks = [text[max(0, text.find(secret) - 100):text.find(secret)] for text in texts if secret in text]
        assert not leaks, f"a secret appears in {len(leaks)} output(s), after: {leaks[:1]}"


@pytest.fixture(name="inline_kubeconfig", scope="module")
def fixture_inline_kubeconfig(kube_lab):
    """The lab's kubeconfig inlined, and the values of it that must never show."""
    kubeconfig = _inline(kube_lab["kubeconfig"])
    user = kubeconfig["users"][0]["user"]
    found = Secrets()
    for key in ("client-key-data", "client-certificate-data", "token"):
        if key in user:
            found.extend(_pem_parts(user[key]) if key.endswith("-data") else [user[key]])
    assert any("PRIVATE KEY" in value for value in found), "the lab kubeconfig should carry a client key to look for"
    return kubeconfig, found


def _variables(directory, **values):
    variables = directory / "variables.yml"
    variables.write_text(yaml.safe_dump(values))
    variables.chmod(0o600)
    return variables


def _results(stdout):
    # At -vvv, ansible-playbook prints its version and configuration before the callback's JSON document.
    result = json.loads(stdout[stdout.index("\n{") :])
    return {task["task"]["name"]: task["hosts"]["localhost"] for play in result["plays"] for task in play["tasks"]}


def _key_parts(lab, namespace, name):
    """The private key of a kubernetes.io/tls Secret, as _pem_parts gives it."""
    return _pem_parts(json.loads(kubectl(lab, "get", "secret", "-n", namespace, name, "-o", "json"))["data"]["tls.key"])


@pytest.fixture(name="runs", scope="module")
def fixture_runs(samba_dc, kube_lab, inline_kubeconfig, tmp_path_factory):
    """The site, a run that fails and the cleanup, in that order: {name: (return code, texts)}, and every secret to look for."""
    directory = tmp_path_factory.mktemp("vsec")
    kubeconfig, found = inline_kubeconfig
    found = Secrets(found)
    identity_password = secrets.token_urlsafe(18) + "-Aa1"
    variables = _variables(
        directory,
        gmsa_domain_connection={
            "domain_transport": "ldap", "domain_server": samba_dc["host"], "domain_auth": "ntlm", "domain_tls": "none",
            "domain_username": f"{samba_dc['netbios_name']}\\{samba_dc['admin_user']}", "domain_password": samba_dc["admin_password"],
            "domain_krb5_config": samba_dc["krb5_config"],
        },
        gmsa_kds_root_key_lab_mode=True,
        gmsa_domain_controllers=["127.0.0.1"],
        gmsa_identity_username="itest-vsec",
        gmsa_identity_password=identity_password,
        gmsa_kubernetes={"kubeconfig": kubeconfig},
        gmsa_accounts=[{"name": "ItestVsec01", "service_accounts": [{"name": "itest-vsec-app", "namespace": "itest-vsec"}]}],
        webhook_name=SITE_WEBHOOK,
        webhook_namespace=SITE_WEBHOOK,
        webhook_replicas=1,
        verify_not_verifiable={"in_pod": "no Windows container runs in the lab"},
        workload_name="itest-vsec-sample",
    )
    found.extend([samba_dc["admin_password"], identity_password])
    namespace, viewer = VIEWER
    kubectl(kube_lab, "create", "serviceaccount", "-n", namespace, viewer)
    kubectl(kube_lab, "create", "clusterrolebinding", viewer, "--clusterrole=view", f"--serviceaccount={namespace}:{viewer}")
    token = kubectl(kube_lab, "create", "token", "-n", namespace, viewer, "--duration=1h").strip()
    found.append(token)
    results = {}
    try:
        results["site"] = run(directory, variables, "wincontainers.gmsa.site")
        assert results["site"][0] == 0, results["site"][1][0][-3000:]
        keys = [part for name in (f"{SITE_WEBHOOK}-tls", f"{SITE_WEBHOOK}-ca") for part in _key_parts(kube_lab, SITE_WEBHOOK, name)]
        assert sum("PRIVATE KEY" in part for part in keys) == 2, "the webhook's CA and serving keys should be among the values looked for"
        found.extend(keys)
        # The same inventory, the cluster reached with the viewer's token (the inline kubeconfig taken out).
        (directory / "failing").mkdir()
        failing = _variables(directory / "failing", **dict(yaml.safe_load(variables.read_text()), gmsa_kubernetes={}))
        results["failing"] = run(
            directory, failing, "wincontainers.gmsa.site",
            K8S_AUTH_HOST=kube_lab["server"], K8S_AUTH_API_KEY=token, K8S_AUTH_SSL_CA_CERT=kube_lab["ca_file"], K8S_AUTH_VERIFY_SSL="true",
        )
        results["cleanup"] = run(directory, variables, "wincontainers.gmsa.cleanup", "-e", "cleanup_domain=true")
        yield results, found
    finally:
        if results.get("cleanup", (1,))[0] != 0:
            run(directory, variables, "wincontainers.gmsa.cleanup", "-e", "cleanup_domain=true")
        kubectl(kube_lab, "delete", "clusterrolebinding", viewer, "--ignore-not-found")
        kubectl(kube_lab, "delete", "serviceaccount", "-n", namespace, viewer, "--ignore-not-found")


def test_site_at_vvv_shows_no_secret(runs):
    (rc, texts), found = runs[0]["site"], runs[1]
    assert rc == 0, texts[0][-3000:] + texts[1][-2000:]
    assert_no_secret(found, texts)


def test_a_failing_run_at_vvv_shows_no_secret(runs):
    (rc, texts), found = runs[0]["failing"], runs[1]
    assert rc != 0, texts[0][-3000:]
    failures = [result.get("msg", "") for result in _results(texts[0]).values() if result.get("failed")]
    assert failures and "forbidden" in " ".join(failures).lower(), failures
    assert_no_secret(found, texts)


def test_cleanup_at_vvv_shows_no_secret_and_leaves_no_kubeconfig_file(runs, tmp_path_factory):
    (rc, texts), found = runs[0]["cleanup"], runs[1]
    assert rc == 0, texts[0][-3000:] + texts[1][-2000:]
    tasks = _results(texts[0])
    # The modules did reach the cluster through the private file (the inventory gives no other way), which is gone
    # after the run: they deleted the workload and the rest.
    path = tasks["Create the private temporary file for the inline kubeconfig"]["path"]
    assert not os.path.exists(path), path
    deleted = [entry["object"] for task in tasks.values() for entry in task.get("objects") or [] if entry.get("action") == "deleted"]
    assert any(ref.startswith("Deployment ") for ref in deleted), deleted
    assert_no_secret(found, texts)


def test_cluster_modules_given_an_inline_kubeconfig_show_no_key_at_vvv(inline_kubeconfig, tmp_path):
    """The collection's modules, without the playbooks' file: they mask the keys themselves (kubernetes.core's
    AnsibleK8SModule, module_utils/k8s/core.py, adds them to no_log_values) and have no action plugin."""
    kubeconfig, found = inline_kubeconfig
    variables = _variables(tmp_path, inline=kubeconfig)
    absent = {"kubeconfig": "{{ inline }}", "state": "absent"}
    playbook = tmp_path / "modules.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "webhook", "wincontainers.gmsa.gmsa_webhook": dict(absent, name=WEBHOOK, namespace=WEBHOOK)},
        {"name": "credspec", "wincontainers.gmsa.gmsa_credspec": dict(absent, credspecs=[{"name": "itest-sec-none", "account_name": "ItestSec01"}])},
        {"name": "admission policy", "wincontainers.gmsa.gmsa_admission_policy": absent},
    ]}]))
    rc, texts = run(tmp_path, variables, str(playbook))
    assert rc == 0, texts[0][-3000:] + texts[1][-2000:]
    assert set(_results(texts[0])) == {"webhook", "credspec", "admission policy"}
    assert_no_secret(found, texts)
