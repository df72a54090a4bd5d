# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""No secret at -vvv with an inline kubeconfig: the cleanup playbook (kubernetes.core's k8s and k8s_info, and the
collection's gmsa_webhook and gmsa_credspec) through ansible-playbook with the JSON callback and ANSIBLE_LOG_PATH,
against the lab's Kubernetes control plane.

The cluster connection is an inline kubeconfig (a mapping in ``gmsa_kubernetes.kubeconfig``) holding the lab
admin's client key, so its body must not show either. Searched for, in stdout, stderr and the log file: the kubeconfig's
client key and certificate data, each as a whole and as PEM body lines. The names are this test's own (``itest-sec``),
so the demo's and other suites' objects are left alone.

    python -m pytest tests/integration/test_secrets_verbosity.py -v
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.lab import COLLECTIONS_PATH

pytest_plugins = ("tests.lab.pytest_kube",)

WEBHOOK = "itest-sec-webhook"


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


def run(directory, variables, playbook, *options):
    """ansible-playbook at -vvv with the JSON callback and a log file: (return code, every text it wrote)."""
    log = directory / "run.log"
    env = dict(
        os.environ,
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


@pytest.fixture(name="inline_kubeconfig")
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


def test_cleanup_with_inline_kubeconfig_shows_no_key_at_vvv(inline_kubeconfig, tmp_path):
    kubeconfig, found = inline_kubeconfig
    variables = _variables(
        tmp_path,
        gmsa_identity_username="isec",
        gmsa_identity_password="",
        gmsa_kubernetes={"kubeconfig": kubeconfig},
        gmsa_accounts=[{"name": "ItestSec01", "service_accounts": [{"name": "itest-sec-app", "namespace": "itest-sec"}]}],
        webhook_name=WEBHOOK,
        webhook_namespace=WEBHOOK,
        workload_name="itest-sec-sample",
    )
    rc, texts = run(tmp_path, variables, "wincontainers.gmsa.cleanup")
    assert rc == 0, texts[0][-3000:] + texts[1][-2000:]
    tasks = _results(texts[0])
    # The modules did reach the cluster, each handed the private file's path, which is gone after the run.
    path = tasks["Create the private temporary file for the inline kubeconfig"]["path"]
    assert path.startswith(str(tmp_path)) and not os.path.exists(path), path
    invocations = [task.get("invocation", {}).get("module_args", {}) for task in tasks.values()]
    assert any(args.get("kubeconfig") == path for args in invocations), "no module was handed the file"
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
