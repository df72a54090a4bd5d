"""The two transports of the cluster modules (plugins/module_utils/cluster/_connection.py) against the lab's real API
server: the standard library's HTTP client for a kubeconfig with a token or a client certificate (files or inline
data), and kubernetes.core's client for the settings only it carries out, here impersonation. Each test shows that
the setting reached the server: whom the server names as the requester is whom the settings say.

    python -m pytest tests/integration/test_cluster_transports.py -v -rs     # from the repository root, as root
"""

import base64
import os

import pytest
import yaml

from tests.integration.support import kubectl, run_play

pytest_plugins = ("tests.lab.pytest_kube",)

NAMESPACE = "itest-transports"
# Reads every kind gmsa_cluster_info lists, and a Namespace-scoped one; nothing is written.
READ = {"wincontainers.gmsa.gmsa_cluster_info": {"credspecs": ["itest-absent"], "workload": {"namespace": NAMESPACE, "name": "itest"}}}


def _read(lab, **connection):
    return run_play(lab, [{**READ, "wincontainers.gmsa.gmsa_cluster_info": dict(READ["wincontainers.gmsa.gmsa_cluster_info"], **connection)}])


@pytest.fixture(name="lab", scope="module")
def fixture_lab(kube_lab):
    kubectl(kube_lab, "create", "namespace", NAMESPACE)
    kubectl(kube_lab, "create", "serviceaccount", "reader", "-n", NAMESPACE)
    yield kube_lab
    kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--wait=false")
    for name in ("inline", "token"):
        path = os.path.join(kube_lab["state_dir"], f"itest-transports-{name}.kubeconfig")
        if os.path.exists(path):
            os.unlink(path)


def _config(lab):
    with open(lab["kubeconfig"], encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def _write(lab, config, name):
    path = os.path.join(lab["state_dir"], f"itest-transports-{name}.kubeconfig")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as stream:
        yaml.safe_dump(config, stream)
    return path


def test_the_lab_kubeconfig_with_certificate_files_reads_as_the_admin(lab):
    play = _read(lab)
    assert play.rc == 0, play.output
    assert play.result["credspecs"] == [] and play.result["pods"] == []


def test_an_inline_kubeconfig_with_certificate_data_reads_the_same(lab):
    config = _config(lab)
    for section, key in (("clusters", "cluster"), ("users", "user")):
        entry = config[section][0][key]
        for field in [field for field in entry if field in ("certificate-authority", "client-certificate", "client-key")]:
            with open(entry.pop(field), "rb") as stream:
                entry[f"{field}-data"] = base64.b64encode(stream.read()).decode()
    play = _read(lab, kubeconfig=_write(lab, config, "inline"))
    assert play.rc == 0, play.output


def test_a_token_kubeconfig_is_the_service_account_the_token_names(lab):
    token = kubectl(lab, "create", "token", "reader", "-n", NAMESPACE, "--duration", "10m").strip()
    config = _config(lab)
    config["users"][0]["user"] = {"token": token}
    play = _read(lab, kubeconfig=_write(lab, config, "token"))
    # The service account has no role: the server refuses it by its name, so the token was what it saw.
    assert play.rc != 0
    assert f'User "system:serviceaccount:{NAMESPACE}:reader" cannot list resource' in play.result["msg"], play.result["msg"]
    assert "forbidden by RBAC" in play.result["msg"]


def test_impersonation_goes_through_kubernetes_core_and_reaches_the_server(lab):
    # Without the Impersonate-User header the admin's certificate would read everything.
    refused = _read(lab, impersonate_user="itest-nobody")
    assert refused.rc != 0
    assert 'User "itest-nobody" cannot list resource' in refused.result["msg"], refused.result["msg"]
    allowed = _read(lab, impersonate_user="itest-admin", impersonate_groups=["system:masters"])
    assert allowed.rc == 0, allowed.output
    assert allowed.result["credspecs"] == [] and allowed.result["pods"] == []
