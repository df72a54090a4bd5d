# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The domain role through ansible-playbook against the lab DC, on both transports.

First run changes, the rerun changes nothing, check mode changes nothing in AD, and neither the identity's
nor the administrator's password shows up even with --diff -vvv. The winrm runs go through the loopback
WS-Management endpoint of test_domain_contract (see its limits there).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from tests.lab import COLLECTIONS_PATH

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")

CONNECTION_KEYS = ("domain_transport", "domain_server", "domain_port", "domain_username", "domain_password", "domain_tls", "domain_ca_cert")
RECAP = re.compile(r"localhost\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)")


def run_role(tmp_path, params: dict, role_vars: dict, *options: str) -> tuple[dict, str]:
    """ansible-playbook with the domain role; return the play recap counts and the whole output."""
    connection = {key: params[key] for key in CONNECTION_KEYS if params.get(key) is not None}
    play = [{
        "hosts": "localhost",
        "gather_facts": False,
        "roles": [{"role": "wincontainers.gmsa.domain", "vars": dict(role_vars, domain_connection=connection)}],
    }]
    playbook = tmp_path / "domain.yml"
    playbook.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0",
               KRB5_CONFIG=params["domain_krb5_config"])
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    command = [ansible_playbook, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook), *options]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    output = completed.stdout + completed.stderr
    recap = RECAP.search(output)
    assert recap, output
    return {key: int(value) for key, value in recap.groupdict().items()}, output


@pytest.fixture
def role_vars() -> dict:
    suffix = secrets.token_hex(3)
    return {
        "domain_lab_mode": True,
        "domain_identity_name": f"ccg-{suffix}",
        "domain_identity_password": f"Aa1-{secrets.token_urlsafe(12)}",
        "domain_accounts": [{"name": f"web{suffix}"}, {"name": f"api{suffix}", "spn": {"add": [f"HTTP/api{suffix}.example.test"]}}],
    }


def test_converges_then_changes_nothing(tmp_path, params, role_vars):
    first, output = run_role(tmp_path, params, role_vars)
    assert first["failed"] == 0, output
    assert first["changed"] == 2, output  # the identity, the gMSAs (the lab has its KDS root key)
    second, output = run_role(tmp_path, params, role_vars)
    assert second == dict(first, changed=0), output
    with open_domain_client(params) as client:
        accounts = client.find_gmsas([account["name"] for account in role_vars["domain_accounts"]])
        identity = client.find_user(role_vars["domain_identity_name"])
        assert len(accounts) == 2
        assert all(account.settings.password_readers == (identity.sid,) for account in accounts.values())
    removed, output = run_role(tmp_path, params, dict(role_vars, domain_state="absent"))
    assert removed["changed"] == 2, output


def test_one_group_per_account(tmp_path, params, role_vars):
    role_vars = dict(role_vars, domain_group_per_account=True)
    first, output = run_role(tmp_path, params, role_vars)
    assert first["failed"] == 0 and first["changed"] == 2, output
    second, output = run_role(tmp_path, params, role_vars)
    assert second["changed"] == 0, output
    with open_domain_client(params) as client:
        for account in role_vars["domain_accounts"]:
            group = client.resolve_principals([account["name"] + "-gMSA-Hosts"])[account["name"] + "-gMSA-Hosts"]
            assert client.find_gmsas([account["name"]])[account["name"]].settings.password_readers == (group.sid,)
            assert group.distinguished_name in client.find_user(role_vars["domain_identity_name"]).groups
    run_role(tmp_path, params, dict(role_vars, domain_state="absent"))


def test_check_mode_changes_nothing_and_diff_shows_no_secret(tmp_path, params, role_vars):
    recap, output = run_role(tmp_path, params, role_vars, "--check", "--diff", "-vvv")
    assert recap["failed"] == 0 and recap["changed"] == 2, output
    assert role_vars["domain_identity_password"] not in output
    assert params["domain_password"] not in output
    assert "host/web" in output  # the diff shows the accounts that would be created
    with open_domain_client(params) as client:
        assert client.find_gmsas([account["name"] for account in role_vars["domain_accounts"]]) == {}
        assert client.find_user(role_vars["domain_identity_name"]) is None
