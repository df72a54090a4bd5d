# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The domain role through ansible-playbook against the lab DC, on both transports.

First run changes, the rerun changes nothing, check mode changes nothing in AD, and neither the identity's
nor the administrator's password shows up even with --diff -vvv. The winrm runs go through the loopback
WS-Management endpoint of test_domain_contract (see its limits there).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import secrets
import subprocess
import sys

import pytest

from ansible_collections.wincontainers.gmsa.plugins.filter.gmsa_identities import gmsa_identities
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_domain_info
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
    tmp_path.mkdir(parents=True, exist_ok=True)
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
    assert first["changed"] == 1, output  # the identity and the gMSAs, one task (the lab has its KDS root key)
    second, output = run_role(tmp_path, params, role_vars)
    assert second == dict(first, changed=0), output
    with open_domain_client(params) as client:
        accounts = client.find_gmsas([account["name"] for account in role_vars["domain_accounts"]])
        identity = client.find_user(role_vars["domain_identity_name"])
        assert len(accounts) == 2
        assert all(account.settings.password_readers == (identity.sid,) for account in accounts.values())
    removed, output = run_role(tmp_path, params, dict(role_vars, domain_state="absent"))
    assert removed["changed"] == 1, output


def test_one_group_per_account(tmp_path, params, role_vars):
    role_vars = dict(role_vars, domain_group_per_account=True)
    first, output = run_role(tmp_path, params, role_vars)
    assert first["failed"] == 0 and first["changed"] == 1, output
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
    assert recap["failed"] == 0 and recap["changed"] == 1, output
    assert role_vars["domain_identity_password"] not in output
    assert params["domain_password"] not in output
    assert "host/web" in output  # the diff shows the accounts that would be created
    with open_domain_client(params) as client:
        assert client.find_gmsas([account["name"] for account in role_vars["domain_accounts"]]) == {}
        assert client.find_user(role_vars["domain_identity_name"]) is None


def test_namespace_scope_identity_cannot_read_another_namespaces_gmsa(tmp_path, params, run):
    """gmsa_identity_scope namespace, as the model derives it: the DC refuses namespace A's identity B's password."""
    suffix = secrets.token_hex(3)
    accounts = [
        {"name": f"a{suffix}", "service_accounts": [{"name": "app", "namespace": f"ns-a{suffix}"}]},
        {"name": f"b{suffix}", "service_accounts": [{"name": "app", "namespace": f"ns-b{suffix}"}]},
    ]
    prefix, secret = f"ccg{suffix}", f"Aa1-{secrets.token_urlsafe(12)}"
    role_vars = {
        "domain_lab_mode": True,
        "domain_accounts": "{{ gmsa_accounts | wincontainers.gmsa.gmsa_account_options }}",
        "domain_identities": "{{ gmsa_accounts | wincontainers.gmsa.gmsa_identities(gmsa_identity_username, gmsa_identity_password) }}",
        "gmsa_accounts": accounts,
        "gmsa_identity_username": prefix,
        "gmsa_identity_password": secret,
    }
    identity_a, identity_b = gmsa_identities(accounts, prefix, secret)
    try:
        first, output = run_role(tmp_path, params, role_vars, "-vvv")
        assert first["failed"] == 0, output
        assert first["changed"] == 1, output  # the two identities and the two gMSAs: one task
        for password in (secret, identity_a["password"], identity_b["password"]):
            assert password not in output
        again, output = run_role(tmp_path, params, role_vars)
        assert again["changed"] == 0, output

        with open_domain_client(params) as client:
            gmsas = client.find_gmsas([accounts[0]["name"], accounts[1]["name"]])
            for identity, account in ((identity_a, accounts[0]), (identity_b, accounts[1])):
                assert gmsas[account["name"]].settings.password_readers == (client.find_user(identity["name"]).sid,)

        check = {"username": identity_a["name"], "password": identity_a["password"], "accounts": [accounts[0]["name"], accounts[1]["name"]]}
        own, other = run(gmsa_domain_info, {"check_retrieval": check})["retrieval"]
        assert own["identity_authenticated"] and own["password_readable"], own["detail"]
        assert other["identity_authenticated"] and not other["password_readable"] and not other["ok"], other
    finally:
        removed, output = run_role(tmp_path, params, dict(role_vars, domain_state="absent"))
        assert removed["failed"] == 0, output


def test_two_runs_at_once_end_as_one_run(tmp_path, ldap_params, role_vars):
    """Item 7 of issue 10: two domain stages racing on the same identity and gMSAs. At most one may fail, with the
    conflict named; a rerun then converges and AD holds each object once, as after one run.

    LDAP only: the WS-Management double runs every command on one session-long LDAP connection, so two concurrent
    scripts interleave on it, which a real DC's separate PowerShell processes never do."""
    params = ldap_params
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_role, tmp_path / str(index), params, role_vars) for index in range(2)]
        results = [run.result() for run in runs]
    try:
        failures = [line for _recap, output in results for line in output.splitlines() if line.startswith(("fatal", "failed:"))]
        assert sum(recap["failed"] for recap, _output in results) <= 1, failures
        for recap, output in results:
            assert recap["failed"] == 0 or re.search(r"already exists|ENTRY_ALREADY_EXISTS|constraint", output, re.IGNORECASE), output
        rerun, output = run_role(tmp_path, params, role_vars)
        assert rerun["failed"] == 0 and rerun["changed"] == 0, output
        with open_domain_client(params) as client:
            names = [account["name"] for account in role_vars["domain_accounts"]]
            assert sorted(client.find_gmsas(names)) == sorted(name.lower() for name in names)
            identity = client.find_user(role_vars["domain_identity_name"])
            assert all(account.settings.password_readers == (identity.sid,) for account in client.find_gmsas(names).values())
    finally:
        run_role(tmp_path, params, dict(role_vars, domain_state="absent"))
