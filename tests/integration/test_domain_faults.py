# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Bad input and faults through the modules against the lab DC, on both transports.

Each case must fail with a message naming the field or the server, never show a password, and leave AD as it
was. (An absent KDS root key cannot be staged on the shared lab DC: that case is a unit test.)
"""

from __future__ import annotations

import json
import secrets

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_identity

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")


@pytest.fixture
def name() -> str:
    return f"flt{secrets.token_hex(4)}"


def gmsas(params: dict, *names: str) -> dict:
    with open_domain_client(params) as client:
        return client.find_gmsas(list(names))


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"name": "ThisNameIsTooLong"}, "accounts[1].name: 'ThisNameIsTooLong' is 17 characters"),
        ({"name": "bad/name"}, "accounts[1].name: 'bad/name' contains '/'"),
        ({"name": "okname", "spn": {"add": ["HTTP:web"]}}, "accounts[1].spn.add[0]: 'HTTP:web' is not an SPN"),
        ({"name": "okname", "allowed_to_retrieve_password": {"set": ["no-such-principal"]}}, "accounts[1].allowed_to_retrieve_password.set[0]"),
        ({"name": "okname", "path": "OU=NoSuchOU,DC=example,DC=test"}, "accounts[1].path: the container 'OU=NoSuchOU,DC=example,DC=test' does not exist"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(run, params, name, bad, field):
    result = run(gmsa_account, {"accounts": [{"name": name}, bad]})
    assert result["failed"] is True
    assert field in result["msg"]
    assert gmsas(params, name) == {}, "the valid account of the same task must not be created"


def test_changing_the_password_interval_is_refused(run, params, name):
    assert run(gmsa_account, {"accounts": [{"name": name, "password_interval_days": 30}]})["changed"] is True
    before = gmsas(params, name)[name.lower()]
    result = run(gmsa_account, {"accounts": [{"name": name, "password_interval_days": 7, "description": "changed"}]})
    assert result["failed"] is True
    assert "accounts[0].password_interval_days" in result["msg"] and "recreate" in result["msg"]
    assert gmsas(params, name)[name.lower()] == before
    run(gmsa_account, {"accounts": [{"name": name, "state": "absent"}]})


def test_wrong_password_names_the_server(run, name):
    result = run(gmsa_account, {"accounts": [{"name": name}]}, domain_password="not-the-password")
    assert result["failed"] is True
    assert "127.0.0.1" in result["msg"]
    assert "not-the-password" not in json.dumps(result)


def test_unreachable_dc_names_the_server(run, name):
    result = run(gmsa_account, {"accounts": [{"name": name}]}, domain_port=9, domain_timeout=10)
    assert result["failed"] is True
    assert "127.0.0.1:9" in result["msg"]


def test_identity_password_refused_by_policy_leaves_no_user(run, params, name):
    result = run(gmsa_identity, {"name": name, "password": "short"})
    assert result["failed"] is True
    assert name in result["msg"] and "short" not in result["msg"]
    with open_domain_client(params) as client:
        assert client.find_user(name) is None


def test_a_batch_that_fails_midway_says_what_it_changed(run, params, name):
    # The second account asks for an SPN the first one holds: AD refuses it only when it is written.
    second = f"{name[:-1]}b"
    result = run(gmsa_account, {"accounts": [{"name": name}, {"name": second, "spn": {"add": [f"host/{name}"]}}]})
    assert result["failed"] is True and result["changed"] is True
    assert f"; before the failure, this task created {name}" in result["msg"]
    assert [account["name"] for account in result["accounts"]] == [name]
    assert set(gmsas(params, name, second)) == {name.lower()}
    run(gmsa_account, {"accounts": [{"name": name, "state": "absent"}]})


def test_a_recreate_that_fails_after_the_delete_is_restored_by_a_rerun(run, params, name, tmp_path):
    state = {"recreate_state_dir": str(tmp_path)}  # where the module keeps the pending recreate
    holder = f"{name[:-1]}h"
    with open_domain_client(params) as client:
        users = f"CN=Users,{client.domain_facts().distinguished_name}"
    account = {
        "name": name, "path": users, "dns_hostname": f"{name}.example.test", "spn": {"add": [f"HTTP/{name}.example.test"]},
        "allowed_to_retrieve_password": {"set": ["Domain Admins"]}, "kerberos_encryption_types": {"set": ["aes256"]},
        "description": "kept across recreate", "password_interval_days": 30,
    }
    assert run(gmsa_account, {"accounts": [account, {"name": holder, "spn": {"add": [f"HTTP/{holder}.conflict.test"]}}], **state})["changed"] is True
    before = gmsas(params, name)[name.lower()]

    # Recreate with an SPN another account holds: the delete succeeds, the create is refused.
    recreate = dict(account, password_interval_days=7, recreate=True)
    failed = run(gmsa_account, {"accounts": [dict(recreate, spn={"add": [f"HTTP/{holder}.conflict.test"]})], **state})
    assert failed["failed"] is True and failed["changed"] is True
    assert f"deleted {name} to recreate it" in failed["msg"]
    assert gmsas(params, name) == {}

    restored = run(gmsa_account, {"accounts": [recreate], **state})
    assert restored["changed"] is True, restored
    after = gmsas(params, name)[name.lower()]
    assert after.distinguished_name == before.distinguished_name and after.password_interval_days == 7
    assert after.settings == before.settings
    assert after.sid != before.sid
    assert not list(tmp_path.rglob("*.json")), "the pending recreate is gone once the account exists again"
    run(gmsa_account, {"accounts": [{"name": name, "state": "absent"}, {"name": holder, "state": "absent"}]})
