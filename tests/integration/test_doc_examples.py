# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Every playbook or task example of the documentation runs, or says in its text that it is a fragment.

The examples are the ```yaml blocks of README.md, docs/*.md and the roles' READMEs, and the modules' EXAMPLES. A
block that is data (a dict: inventory variables, a requirements file) must parse. A block of plays or tasks must
either carry a comment line ``# Fragment: <why>`` (``# Fragments:`` for a module's EXAMPLES) or be listed in
EXAMPLE_VARIABLES below, which declares the values that stand in for its placeholders on the lab (passed as extra
variables, which win over the play's own ``vars``; the text of the example is run exactly as written). Those run
against the lab, from a domain and a cluster that hold none of their objects.

Run from the repository root: ``python -m pytest tests/integration/test_doc_examples.py -v``.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import secrets
import subprocess
import sys

import pytest
import yaml

from tests.lab import COLLECTIONS_PATH, kube

# The lab DC and cluster, and the LDAP connection options (ldap_params).
pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube", "tests.integration.wsman_endpoint")

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")),
             *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "roles").glob("*/README.md"))]
BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FRAGMENT = re.compile(r"^\s*# Fragments?: \S", re.MULTILINE)
README_PLAY = "README.md: gMSA for WebApp01, from an empty domain and cluster to a running workload"
# Placeholders of each example that runs, and the lab's values for them. Names are this suite's own, so the demo's
# objects on the shared lab are never touched.
EXAMPLE_VARIABLES = {
    README_PLAY: lambda lab: {
        "ad_connection": lab["ad_connection"],
        "cluster_connection": {"kubeconfig": lab["kubeconfig"]},
        "dc_addresses": ["127.0.0.1"],
        "gmsa_name": "ItestDoc01",
        "identity_name": "itest-doc-ccg",
        "app_namespace": "itest-doc",
        "vault_gmsa_admin_password": "not used: ad_connection holds the lab's own",
        "vault_identity_password": lab["identity_password"],
    },
}


def examples():
    """Each ```yaml block of the documentation: (id, text), the id naming the file and the block's first play or task."""
    found = []
    for document in DOCUMENTS:
        for number, match in enumerate(BLOCK.finditer((ROOT / document).read_text())):
            text = match.group(1)
            content = yaml.safe_load(text)
            first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
            found.append((f"{document}: {first.get('name') or f'block {number + 1}'}", text))
    for module in sorted((ROOT / "plugins" / "modules").glob("*.py")):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.Assign) and [target.id for target in node.targets if isinstance(target, ast.Name)] == ["EXAMPLES"]:
                found.append((f"{module.relative_to(ROOT)}: EXAMPLES", node.value.value))
    return found


@pytest.mark.parametrize("example_id, text", [pytest.param(*example, id=example[0]) for example in examples()])
def test_every_example_runs_in_a_test_or_says_it_is_a_fragment(example_id, text):
    content = yaml.safe_load(text)
    if isinstance(content, dict):
        return  # data: inventory variables, a requirements file
    assert isinstance(content, list), f"{example_id}: neither data nor plays or tasks"
    assert FRAGMENT.search(text) or example_id in EXAMPLE_VARIABLES, (
        f"{example_id}: a play or task example must run in this test (EXAMPLE_VARIABLES) or say '# Fragment: <why>'"
    )


def test_the_examples_that_run_are_in_the_documentation():
    assert set(EXAMPLE_VARIABLES) <= {example[0] for example in examples()}


@pytest.fixture(name="lab")
def fixture_lab(samba_dc, kube_lab, ldap_params):
    connection = {key: ldap_params[key] for key in ("domain_transport", "domain_server", "domain_username", "domain_password", "domain_krb5_config")}
    return {
        "ad_connection": dict(connection, domain_auth="ntlm", domain_tls="none"),
        "kubeconfig": kube_lab["kubeconfig"],
        "kube": kube_lab,
        "identity_password": f"Aa1-{secrets.token_urlsafe(18)}",
    }


def ansible_playbook(playbook: pathlib.Path, variables: dict):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               NO_PROXY="127.0.0.1,localhost")
    variables_file = playbook.with_suffix(".vars.json")
    variables_file.write_text(json.dumps(dict(variables, ansible_python_interpreter=sys.executable)))
    variables_file.chmod(0o600)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", f"@{variables_file}", str(playbook)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)


def remove_objects(tmp_path, variables):
    """Take away what the README's play creates, so it starts from an empty domain and cluster (the webhook stays)."""
    play = [{
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {"group/wincontainers.gmsa.domain": "{{ ad_connection }}", "group/wincontainers.gmsa.cluster": "{{ cluster_connection }}",
                            "group/kubernetes.core.k8s": "{{ cluster_connection }}"},
        "tasks": [
            {"kubernetes.core.k8s": {"state": "absent", "kind": "Namespace", "name": "{{ app_namespace }}", "wait": True}},
            {"wincontainers.gmsa.gmsa_credspec": {"state": "absent", "credspecs": [{"account_name": "{{ gmsa_name }}"}]},
             "when": "query('kubernetes.core.k8s', kind='CustomResourceDefinition', resource_name='gmsacredentialspecs.windows.k8s.io', "
                     "kubeconfig=cluster_connection.kubeconfig) | length > 0"},
            {"wincontainers.gmsa.gmsa_account": {"accounts": [{"name": "{{ gmsa_name }}", "state": "absent"}]}},
            {"wincontainers.gmsa.gmsa_identity": {"name": "{{ identity_name }}", "state": "absent"}},
        ],
    }]
    playbook = tmp_path / "remove.yml"
    playbook.write_text(yaml.safe_dump(play))
    completed = ansible_playbook(playbook, variables)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]


def test_the_readme_play_goes_from_an_empty_domain_and_cluster_to_a_workload(tmp_path, lab):
    text = dict(examples())[README_PLAY]
    variables = EXAMPLE_VARIABLES[README_PLAY](lab)
    remove_objects(tmp_path, variables)
    try:
        playbook = tmp_path / "readme.yml"
        playbook.write_text(text)
        completed = ansible_playbook(playbook, variables)
        assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]
        assert lab["identity_password"] not in completed.stdout + completed.stderr

        listing = kube.kubectl(lab["kube"]["state_dir"], lab["kube"]["binaries"], "get", "pods", "-n", "itest-doc", "-l", "app=webapp", "-o", "json")
        pods = json.loads(listing)["items"]
        assert [pod["spec"]["nodeName"] for pod in pods] == [lab["kube"]["nodes"]["windows"]]
        assert pods[0]["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] == "itestdoc01"
        assert pods[0]["spec"]["serviceAccountName"] == "webapp"
    finally:
        remove_objects(tmp_path, variables)
