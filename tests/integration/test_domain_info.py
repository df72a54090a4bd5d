# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_domain_info against the lab DC on both transports: facts, and the retrieval chain checked from Linux."""

from __future__ import annotations

import json
import secrets
import shutil

import pytest

from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_domain_info, gmsa_identity

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")


@pytest.fixture(name="run")
def fixture_run(run):
    """The shared runner, failing the test when the module fails: every call here must succeed."""

    def run_module(module, args: dict) -> dict:
        result = run(module, args)
        assert not result.get("failed"), result.get("msg")
        return result

    return run_module


def test_facts_match_the_lab(run, samba_dc):
    result = run(gmsa_domain_info, {})
    assert result["changed"] is False
    domain = result["domain"]
    assert (domain["dns_name"], domain["netbios_name"]) == (samba_dc["dns_domain"], samba_dc["netbios_name"])
    assert any(key["usable"] for key in result["kds_root_keys"])


def test_retrieval_chain(run):
    suffix = secrets.token_hex(3)
    identity, password = f"ccg-{suffix}", f"Aa1-{secrets.token_urlsafe(12)}"
    readable, closed = f"ok{suffix}", f"no{suffix}"
    run(gmsa_identity, {"name": identity, "password": password})
    run(gmsa_account, {"accounts": [{"name": readable, "allowed_to_retrieve_password": {"set": [identity]}}, {"name": closed}]})

    check = {"username": identity, "password": password, "accounts": [readable, closed]}
    result = run(gmsa_domain_info, {"accounts": [readable], "check_retrieval": check})
    assert result["accounts"][0]["exists"] is True
    ok, refused = result["retrieval"]
    assert ok["identity_authenticated"] and ok["password_readable"]
    assert ok["kerberos_ticket"] == ("ok" if shutil.which("kinit") else "skipped"), ok["detail"]
    assert refused["identity_authenticated"] and not refused["password_readable"] and not refused["ok"]
    assert result["retrieval_ok"] is False
    assert password not in json.dumps(result)

    wrong = run(gmsa_domain_info, {"check_retrieval": dict(check, password="wrong-password", accounts=[readable])})
    assert wrong["retrieval"][0]["identity_authenticated"] is False

    run(gmsa_account, {"accounts": [{"name": readable, "state": "absent"}, {"name": closed, "state": "absent"}]})
    run(gmsa_identity, {"name": identity, "state": "absent"})
