"""The execution environment image built here (tests/awx/ee.py) holds the collection and runs it against the lab.

The image is built from extensions/ee on a Debian base made by debootstrap (no registry); podman runs it with
runc. ansible-runner runs a playbook in it with process isolation, as AWX's receptor worker does, against the
lab's Samba AD DC and Kubernetes API server on the host's loopback (the container shares the host's network).

Run from the repository root: ``python -m pytest tests/awx/test_ee_image.py`` (builds the image when missing).
"""

import json
import os
import pathlib
import secrets
import subprocess
import sys

import ansible_runner
import pytest

from tests.awx import ee, podman_env
from tests.lab import REPO_ROOT, kube

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube")

SERVICE_ACCOUNT = ("kube-system", "itest-ee-reader")
# Read-only on both sides: the domain's facts over LDAP, a namespace from the API server.
PLAYBOOK = """
- name: The collection in the execution environment, against the lab
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read the domain facts
      wincontainers.gmsa.gmsa_domain_info:
      register: domain
    - name: Read a namespace
      kubernetes.core.k8s_info:
        kind: Namespace
        name: kube-system
      register: namespace
    - name: Report
      ansible.builtin.debug:
        msg: "{{ {'dns_name': domain.domain.dns_name, 'namespaces': namespace.resources | map(attribute='metadata.name') | list} }}"
"""


@pytest.fixture(name="image", scope="module")
def fixture_image():
    try:
        return ee.ensure_image()
    except ee.ImageError as error:
        pytest.fail("the execution environment image could not be built: %s" % error, pytrace=False)


def in_image(image, *command):
    result = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", image] + list(command), env=podman_env(), capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_ansible_doc_lists_every_module_of_the_collection(image):
    listed = json.loads(in_image(image, "ansible-doc", "-t", "module", "-l", "wincontainers.gmsa", "--json"))
    shipped = {"wincontainers.gmsa." + path.stem for path in pathlib.Path(REPO_ROOT, "plugins", "modules").glob("gmsa_*.py")}
    assert set(listed) == shipped


def test_image_holds_the_pinned_ansible_and_the_modules_python_requirements(image):
    versions = json.loads(
        in_image(
            image, "python3", "-c",
            "import json, ansible, ansible_runner, importlib.metadata as m; "
            "import winrm, spnego, sansldap, kubernetes, yaml, jsonpatch, cryptography; "
            "print(json.dumps({'ansible-core': ansible.__version__, 'ansible-runner': m.version('ansible-runner')}))",
        )
    )
    assert versions["ansible-core"].startswith("2.21."), versions
    assert versions["ansible-runner"].startswith("2.4."), versions
    # bindep.txt's Kerberos client, for Kerberos authentication to the domain.
    assert "kinit" in in_image(image, "sh", "-c", "command -v kinit")


def test_kubernetes_core_dependency_is_installed(image):
    listed = json.loads(in_image(image, "ansible-galaxy", "collection", "list", "--format", "json"))
    collections = {name: info["version"] for path in listed.values() for name, info in path.items()}
    assert collections["kubernetes.core"].startswith("6."), collections
    assert "wincontainers.gmsa" in collections, collections


@pytest.fixture(name="job_dir")
def fixture_job_dir(samba_dc, kube_lab, tmp_path):
    """A private data directory as AWX lays one out, with the credentials' environment, the secrets returned."""
    namespace, name = SERVICE_ACCOUNT

    def kubectl(*args):
        return kube.kubectl(kube_lab["state_dir"], kube_lab["binaries"], *args)

    kubectl("create", "serviceaccount", "-n", namespace, name)
    kubectl("create", "clusterrolebinding", name, "--clusterrole=view", "--serviceaccount=%s:%s" % (namespace, name))
    token = kubectl("create", "token", "-n", namespace, name, "--duration=1h").strip()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "ee_check.yml").write_text(PLAYBOOK)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "k8s_ca.crt").write_text(pathlib.Path(kube_lab["ca_file"]).read_text())
    envvars = {
        "GMSA_DOMAIN_SERVER": samba_dc["host"],
        "GMSA_DOMAIN_TRANSPORT": "ldap",
        "GMSA_DOMAIN_USERNAME": "%s\\%s" % (samba_dc["netbios_name"], samba_dc["admin_user"]),
        "GMSA_DOMAIN_PASSWORD": samba_dc["admin_password"],
        "GMSA_DOMAIN_AUTH": "ntlm",
        "GMSA_DOMAIN_TLS": "none",
        "K8S_AUTH_HOST": kube_lab["server"],
        "K8S_AUTH_API_KEY": token,
        "K8S_AUTH_VERIFY_SSL": "True",
        # The private data directory is /runner inside the container, as in AWX.
        "K8S_AUTH_SSL_CA_CERT": "/runner/env/k8s_ca.crt",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    yield tmp_path, envvars, (samba_dc["admin_password"], token)
    kubectl("delete", "clusterrolebinding", name, "--ignore-not-found")
    kubectl("delete", "serviceaccount", "-n", namespace, name, "--ignore-not-found")


def test_runner_with_process_isolation_runs_the_collection_against_the_lab(image, job_dir, samba_dc, monkeypatch):
    private_data_dir, envvars, secret_values = job_dir
    for name, value in podman_env({}).items():
        monkeypatch.setenv(name, value)
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        playbook="ee_check.yml",
        inventory="localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3",
        envvars=envvars,
        process_isolation=True,
        process_isolation_executable="podman",
        container_image=image,
        container_options=["--network=host", "--user=root"],
        ident="ee-check-" + secrets.token_hex(4),
        verbosity=3,
        quiet=True,
    )
    stdout = runner.stdout.read()
    assert runner.status == "successful", stdout[-4000:]
    report = next(event["event_data"]["res"]["msg"] for event in runner.events if event["event"] == "runner_on_ok" and event["event_data"]["task"] == "Report")
    assert report == {"dns_name": samba_dc["dns_domain"], "namespaces": ["kube-system"]}
    texts = [stdout] + [json.dumps(event) for event in runner.events]
    assert not [text for text in texts for secret in secret_values if secret in text], "a secret appears in stdout or an event"
    # What shows it ran in the image, not on this machine: the interpreter's path is the image's.
    assert "/usr/bin/python3" in stdout and os.path.realpath(sys.executable) not in stdout
