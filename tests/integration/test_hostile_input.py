# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Hostile input through the real domain modules on the lab DC, on both transports.

A selection of tests/unit/plugins/modules/test_hostile_input.py's table, plus values that are valid and must be
carried as data (shell and PowerShell syntax in passwords, descriptions and DNs; LDAP filter syntax in
principals). Proven here: what is refused names its field and leaves nothing behind in AD; the ``winrm``
endpoint received only the collection's own scripts and no write; what is accepted is stored byte for byte; a
canary command embedded in the values never ran. (The cluster side is in test_least_privilege.py.)
"""

from __future__ import annotations

import secrets

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_identity

pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")

WRITES = {"create_gmsa", "update_gmsa", "delete_gmsa", "create_kds_root_key", "create_user", "update_user", "delete_user", "create_group", "set_group_members"}


@pytest.fixture
def tag(request) -> str:
    """A short unique tag per test and transport, for names of at most 15 characters."""
    return ("w" if "winrm" in request.node.callspec.id else "l") + secrets.token_hex(3)


@pytest.fixture
def canary(tmp_path):
    """A file that exists only if a shell ever ran one of the values below."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a value was executed as a command"


@pytest.fixture
def admin(params):
    with open_domain_client(params) as client:
        yield client


@pytest.fixture
def endpoint_writes(params, request):
    """The write operations the WS-Management endpoint carried out since the test started (ldap: none to watch)."""
    if params["domain_transport"] != "winrm":
        return lambda: []
    host = request.getfixturevalue("powershell_host")
    start = len(host.operations)
    return lambda: [operation for operation in host.operations[start:] if operation in WRITES]


def test_refused_values_name_their_field_and_leave_nothing_behind(run, admin, tag, canary, endpoint_writes):
    base = admin.domain_facts().distinguished_name
    injection = f"$(touch {canary})`touch {canary}`"
    cases = [
        (gmsa_account, {"accounts": [{"name": "Web'App"}]}, "accounts[0].name: \"Web'App\" cannot be the host name"),
        (gmsa_account, {"accounts": [{"name": "Web`App"}]}, "accounts[0].name: 'Web`App' cannot be the host name"),
        (gmsa_account, {"accounts": [{"name": "a$(whoami)"}]}, "accounts[0].name: 'a$(whoami)' cannot be the host name"),
        (gmsa_account, {"accounts": [{"name": f"hi{tag}", "spn": {"add": ["host/a$(whoami)"]}}]}, "accounts[0].spn.add[0]: host of SPN"),
        (gmsa_account, {"accounts": [{"name": f"hi{tag}", "path": f"OU=a;{base}"}]}, "accounts[0].path: "),
        # Valid syntax, so the directory is asked, as data: no such container, no such principal.
        (gmsa_account, {"accounts": [{"name": f"hi{tag}", "path": f"OU={injection},{base}"}]}, "accounts[0].path: the container"),
        (
            gmsa_account,
            {"accounts": [{"name": f"hi{tag}", "allowed_to_retrieve_password": {"set": [f"CN=*)(objectClass=*,{base}"]}}]},
            "accounts[0].allowed_to_retrieve_password.set[0]: no user, group or computer",
        ),
        (gmsa_identity, {"name": f"hi{tag}';", "password": "Aa1-x"}, "name: "),
        (gmsa_identity, {"name": f"hi{tag}", "password": "Aa1-x", "groups": {"add": ["*)(cn=*"]}}, "groups.add[0]: '*)(cn=*' is not a distinguished name"),
        (
            gmsa_identity,
            {"name": f"hi{tag}", "password": "Aa1-xyz-123", "groups": {"add": [f"CN={injection},{base}"]}, "create_groups": True},
            "groups.add[0]: no group",
        ),
    ]
    for module, args, message in cases:
        result = run(module, args)
        assert result.get("failed") and message in result["msg"], (args, result)
        assert not result.get("changed")
    assert admin.find_gmsas([f"hi{tag}", "Web'App", "Web`App", "a$(whoami)"]) == {}
    assert admin.find_user(f"hi{tag}") is None
    assert endpoint_writes() == []


def test_shell_and_filter_syntax_in_valid_values_is_stored_as_data(run, admin, tag, canary):
    injection = f"$(touch {canary}) `touch {canary}` ; & | '\" *)(cn=*"
    password = f"P'a\"ss$(touch {canary})`id`;é€-{tag}"
    name = f"W'b`{tag}"  # a valid sAMAccountName, not a host name: it needs dns_hostname
    account = {"name": name, "dns_hostname": f"hi{tag}.example.test", "description": injection}
    created = run(gmsa_account, {"accounts": [account]})
    assert not created.get("failed"), created
    try:
        stored = admin.find_gmsas([name])[name.lower()]
        assert stored.sam_account_name == f"{name}$"
        assert stored.settings.description == injection
        assert stored.settings.dns_host_name == f"hi{tag}.example.test"
        assert sorted(stored.settings.spns) == sorted([f"host/hi{tag}", f"host/hi{tag}.example.test"])
        assert run(gmsa_account, {"accounts": [account]})["changed"] is False
    finally:
        assert not run(gmsa_account, {"accounts": [{"name": name, "state": "absent"}]}).get("failed")
    assert admin.find_gmsas([name]) == {}

    user = {"name": f"hi{tag}", "password": password, "description": injection}
    result = run(gmsa_identity, user)
    assert not result.get("failed"), result
    try:
        assert admin.find_user(f"hi{tag}").description == injection
        assert admin.credentials_valid(f"hi{tag}", password) is True
        # The module itself compares the stored password with the given one: equal, so nothing to change.
        again = run(gmsa_identity, dict(user, update_password="always"))
        assert again["changed"] is False and again["password_changed"] is False
        assert password not in str(result) and password not in str(again)
    finally:
        assert not run(gmsa_identity, {"name": f"hi{tag}", "state": "absent"}).get("failed")
