# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One contract for both domain transports, run against the lab's Samba AD DC.

``ldap`` talks to the DC for real. ``winrm`` drives the real pywinrm against ``wsman_endpoint`` on loopback:
real HTTPS (and HTTP with message encryption), a real NTLM handshake, real SOAP envelopes; the endpoint
answers each PowerShell script by carrying out the same operation on the lab DC. No PowerShell runs on this
machine, so for ``winrm`` this suite proves the transport and the contract, not the PowerShell itself (see
wsman_endpoint's docstring).
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import shutil
import subprocess

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    BatchFailed,
    DomainConnectionError,
    DomainError,
    GmsaCreation,
    GmsaSettings,
    open_domain_client,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._gmsa_password import request_ticket
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import (
    PASSWORD_READER_MASK,
    Ace,
    decode_security_descriptor,
    encode_security_descriptor,
)
from winrm.exceptions import InvalidCredentialsError
from winrm.protocol import Protocol

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")

ACCESS_DENIED = 0x01  # ACE type (MS-DTYP 2.4.4.1)
INJECTION_NAMES = ["a'b", "x$(y)", "b`c", "s;t", "*)(cn=*", 'q"r']


@pytest.fixture(params=["ldap", "winrm", "winrm-kerberos", "winrm-credssp"])
def params(request, ldap_params) -> dict:
    """The contract runs on LDAP and on WinRM with each authentication a DC's WinRM service accepts."""
    fixture = {"ldap": "ldap_params", "winrm": "winrm_params", "winrm-kerberos": "kerberos_params", "winrm-credssp": "credssp_params"}[request.param]
    return request.getfixturevalue(fixture)


@pytest.fixture
def client(params):
    with open_domain_client(params) as domain_client:
        yield domain_client


@pytest.fixture
def unique_name(request) -> str:
    """A fresh account name per test and transport (at most 15 characters)."""
    transport = "w" if "winrm" in request.node.callspec.id else "l"
    return f"ct{transport}{secrets.token_hex(4)}"


def settings(name: str, **overrides) -> GmsaSettings:
    # AD refuses an SPN another account holds: every account gets its own.
    values = dict(dns_host_name=f"{name}.example.test", spns=(f"host/{name}",), password_readers=(), encryption_types=0x18, description=None, enabled=True)
    values.update(overrides)
    return GmsaSettings(**values)


def test_domain_facts(client, samba_dc):
    facts = client.domain_facts()
    assert facts.dns_name == samba_dc["dns_domain"]
    assert facts.dns_tree_name == samba_dc["dns_domain"]
    assert facts.netbios_name == samba_dc["netbios_name"]
    assert facts.distinguished_name.lower() == samba_dc["base_dn"].lower()
    assert facts.sid.startswith("S-1-5-21-") and facts.sid.count("-") == 6


def test_container_exists(client):
    facts = client.domain_facts()
    assert client.container_exists(f"CN=Managed Service Accounts,{facts.distinguished_name}") is True
    assert client.container_exists(f"cn=users,{facts.distinguished_name.lower()}") is True
    assert client.container_exists(f"OU=NoSuchOU,{facts.distinguished_name}") is False


def test_gmsa_lifecycle(client, unique_name):
    facts = client.domain_facts()
    admins = client.resolve_principals(["Domain Admins"])["Domain Admins"]
    container = f"CN=Managed Service Accounts,{facts.distinguished_name}"
    created = client.create_gmsa(unique_name, container, 30, settings(unique_name, password_readers=(admins.sid,)))
    assert created.sam_account_name == f"{unique_name}$"
    assert created.settings == settings(unique_name, password_readers=(admins.sid,))
    assert created.sid.startswith(facts.sid + "-")
    assert client.find_gmsas([unique_name.upper(), "nosuchaccount"]) == {unique_name.lower(): created}

    spns = (f"host/{unique_name}", f"HTTP/{unique_name}.example.test")
    desired = settings(unique_name, spns=spns, password_readers=(), encryption_types=0x10, description="contract", enabled=False)
    updated = client.update_gmsa(created, desired)
    assert updated.settings == desired
    assert updated.sid == created.sid and updated.password_interval_days == 30
    cleared = client.update_gmsa(updated, settings(unique_name, spns=(), description=None))
    assert cleared.settings.spns == () and cleared.settings.description is None

    client.delete_gmsa(cleared)
    assert client.find_gmsas([unique_name]) == {}


def test_gmsa_batches_stop_at_the_first_failure(client, unique_name):
    facts = client.domain_facts()
    container = f"CN=Managed Service Accounts,{facts.distinguished_name}"
    names = [f"{unique_name[:11]}b{index:02d}" for index in range(20)]
    creations = [GmsaCreation(name, container, 30, settings(name)) for name in names]
    # The fourth goes to a container that does not exist: the DC refuses it, and the batch stops there.
    creations[3] = dataclasses.replace(creations[3], container=f"OU=NoSuchOU,{facts.distinguished_name}")
    try:
        with pytest.raises(BatchFailed) as failed:
            client.create_gmsas(creations)
        assert failed.value.done == 3
        assert set(client.find_gmsas(names)) == {name.lower() for name in names[:3]}

        creations[3] = dataclasses.replace(creations[3], container=container)
        created = client.create_gmsas(creations[3:])
        assert [account.name.lower() for account in created] == [name.lower() for name in names[3:]]
        assert all(account.settings == settings(account.name) for account in created)

        accounts = [client.find_gmsas(names)[name.lower()] for name in names]
        updated = client.update_gmsas([(account, settings(account.name, description="batch")) for account in accounts])
        assert [account.settings.description for account in updated] == ["batch"] * 20
    finally:
        client.delete_gmsas(list(client.find_gmsas(names).values()))
    assert client.find_gmsas(names) == {}


def test_principals_by_name_sid_and_dn(client):
    facts = client.domain_facts()
    admins = client.resolve_principals(["Domain Admins"])["Domain Admins"]
    assert admins.sid == f"{facts.sid}-512"
    by_other_forms = client.resolve_principals([admins.sid, admins.distinguished_name, "S-1-5-32-544", "nobody-here"])
    assert by_other_forms[admins.sid] == admins
    assert by_other_forms[admins.distinguished_name] == admins
    assert by_other_forms["S-1-5-32-544"].sam_account_name == "Administrators"
    assert "nobody-here" not in by_other_forms


@pytest.mark.parametrize("name", INJECTION_NAMES)
def test_injection_attempts_stay_data(client, name):
    # A filter or script built from these would match everything or run code; as data they match nothing.
    assert client.resolve_principals([name]) == {}
    assert client.find_gmsas([name]) == {}
    assert client.find_user(name) is None


def test_kds_root_keys(client):
    keys = client.kds_root_keys()
    assert keys, "provisioning creates a root key"
    # In the future, so that DCs do not pick it for the passwords other tests of this lab derive now.
    effective = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=30)
    key = client.create_kds_root_key(effective)
    assert abs((key.effective_time - effective).total_seconds()) < 1
    assert key.key_id in {existing.key_id for existing in client.kds_root_keys()}


def test_identity_lifecycle_and_retrieval_chain(client, unique_name):
    facts = client.domain_facts()
    password = f"Aa1-{secrets.token_urlsafe(12)}"
    user = client.create_user(unique_name, f"CN=Users,{facts.distinguished_name}", password, "contract identity", True, True)
    assert user.enabled and user.password_never_expires and user.description == "contract identity"
    assert client.credentials_valid(unique_name, password) is True
    assert client.credentials_valid(unique_name, password + "x") is False

    readers = client.create_group(f"{unique_name}-r", f"CN=Users,{facts.distinguished_name}")
    assert client.resolve_principals([readers.sam_account_name])[readers.sam_account_name] == readers
    client.set_group_members(readers.distinguished_name, add=[user.distinguished_name], remove=[])
    assert client.find_user(unique_name).groups == (readers.distinguished_name,)

    account_name = f"{unique_name}g"
    container = f"CN=Managed Service Accounts,{facts.distinguished_name}"
    # Allowed through the group, as Microsoft recommends: the identity's token carries the membership.
    account = client.create_gmsa(account_name, container, 30, settings(account_name, password_readers=(readers.sid,)))
    blob = client.read_managed_password(account, unique_name, password)
    assert blob and len(blob) > 256
    if shutil.which("kinit"):
        ticket = request_ticket(_run, account_name, facts.dns_name.upper(), facts.dns_name, blob)
        assert ticket.status == "ok", ticket.detail
    with pytest.raises(AuthenticationFailed):
        client.read_managed_password(account, unique_name, "wrong-password")

    new_password = f"Bb2-{secrets.token_urlsafe(12)}"
    updated = client.update_user(user, description=None, enabled=True, password_never_expires=False, password=new_password)
    assert updated.description is None and not updated.password_never_expires
    assert client.credentials_valid(unique_name, new_password) is True

    closed = client.update_gmsa(account, settings(account_name, password_readers=()))
    assert client.read_managed_password(closed, unique_name, new_password) is None

    client.set_group_members(readers.distinguished_name, add=[], remove=[user.distinguished_name])
    assert client.find_user(unique_name).groups == ()
    client.delete_gmsa(closed)
    client.delete_user(client.find_user(unique_name))
    assert client.find_user(unique_name) is None


def test_rewriting_the_readers_keeps_a_deny_that_others_put_there(client, ldap_params, unique_name):
    facts = client.domain_facts()
    users = f"CN=Users,{facts.distinguished_name}"
    passwords = {role: f"Aa1-{secrets.token_urlsafe(12)}" for role in "uh"}
    denied = client.create_user(f"{unique_name}u", users, passwords["u"], None, True, True)
    added = client.create_user(f"{unique_name}h", users, passwords["h"], None, True, True)
    group = client.create_group(f"{unique_name}-g", users)
    client.set_group_members(group.distinguished_name, add=[denied.distinguished_name], remove=[])
    name = f"{unique_name}g"
    account = client.create_gmsa(name, f"CN=Managed Service Accounts,{facts.distinguished_name}", 30, settings(name, password_readers=(group.sid,)))
    assert client.read_managed_password(account, denied.name, passwords["u"]), "U reads through G"

    # Someone else denies U, outside the collection (as an administrator would with ADSI Edit), ahead of the grants.
    existing = decode_security_descriptor(account.membership)
    with_deny = dataclasses.replace(existing, dacl=(Ace(ACCESS_DENIED, 0, PASSWORD_READER_MASK, denied.sid), *existing.dacl))
    with open_domain_client(ldap_params) as administrator:
        administrator._call("denying U", administrator._connection.modify, account.distinguished_name,
                            [("replace", "msDS-GroupMSAMembership", encode_security_descriptor(with_deny))])
    account = client.find_gmsas([name])[name.lower()]
    assert client.read_managed_password(account, denied.name, passwords["u"]) is None, "the DC honours the deny"

    updated = client.update_gmsa(account, dataclasses.replace(account.settings, password_readers=(group.sid, added.sid)))
    assert set(updated.settings.password_readers) == {group.sid, added.sid}
    assert decode_security_descriptor(updated.membership).other_aces == (Ace(ACCESS_DENIED, 0, PASSWORD_READER_MASK, denied.sid),)
    assert client.read_managed_password(updated, added.name, passwords["h"]), "H, added, reads"
    assert client.read_managed_password(updated, denied.name, passwords["u"]) is None, "U still cannot"

    client.delete_gmsa(updated)
    for user in (denied, added):
        client.delete_user(user)
    with open_domain_client(ldap_params) as administrator:
        administrator._call("deleting G", administrator._connection.delete, group.distinguished_name)


def _run(command):
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    return completed.returncode, completed.stdout, completed.stderr


def test_failed_write_leaves_nothing_behind(client, unique_name):
    facts = client.domain_facts()
    with pytest.raises(DomainError) as raised:
        client.create_gmsa(unique_name, f"OU=NoSuchOU,{facts.distinguished_name}", 30, settings(unique_name))
    assert unique_name in str(raised.value) or "NoSuchOU" in str(raised.value)
    assert client.find_gmsas([unique_name]) == {}


def test_wrong_password_is_refused_naming_the_server(params):
    with pytest.raises(AuthenticationFailed) as raised:
        with open_domain_client(dict(params, domain_password="wrong-password")) as domain_client:
            domain_client.domain_facts()
    assert "127.0.0.1" in str(raised.value)
    assert "wrong-password" not in str(raised.value)


def test_unreachable_server_names_the_server(params):
    closed_port = 9  # discard: nothing listens there on loopback
    with pytest.raises(DomainConnectionError) as raised:
        with open_domain_client(dict(params, domain_port=closed_port, domain_timeout=10)) as domain_client:
            domain_client.domain_facts()
    assert f"127.0.0.1:{closed_port}" in str(raised.value)


class TestWinRMVariants:
    """Settings of the winrm transport beyond the HTTPS + NTLM default of the contract runs."""

    def test_http_with_message_encryption(self, http_endpoint, winrm_params, samba_dc):
        params = dict(winrm_params, domain_tls="none", domain_port=http_endpoint.port, domain_ca_cert=None)
        with open_domain_client(params) as domain_client:
            assert domain_client.domain_facts().netbios_name == samba_dc["netbios_name"]

    def test_basic_is_refused_naming_the_option(self, winrm_params):
        params = dict(winrm_params, domain_auth="basic", domain_username=winrm_params["domain_username"].split("\\")[1])
        with pytest.raises(DomainError, match="^domain_auth: basic authenticates only local accounts"):
            open_domain_client(params)

    def test_endpoint_refuses_basic_as_a_dc_does(self, https_endpoint, winrm_params, tls_files):
        # Past the module's own check: the double must refuse Basic as a DC's WinRM service does.
        protocol = Protocol(
            f"https://127.0.0.1:{https_endpoint.port}/wsman", transport="basic", username=winrm_params["domain_username"].split("\\")[1],
            password=winrm_params["domain_password"], ca_trust_path=tls_files[2], proxy=None,
        )
        with pytest.raises(InvalidCredentialsError):
            protocol.open_shell()

    def test_untrusted_certificate_is_refused(self, winrm_params):
        with pytest.raises(DomainConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            with open_domain_client(dict(winrm_params, domain_ca_cert=None)) as domain_client:
                domain_client.domain_facts()

    def test_one_shell_and_few_requests_per_run(self, https_endpoint, winrm_params):
        before = https_endpoint.requests
        with open_domain_client(winrm_params) as domain_client:
            domain_client.domain_facts()
            domain_client.kds_root_keys()
        # NTLM handshake (3) + Create + 2 x (Command, Send, Receive, Signal) + Delete
        assert https_endpoint.requests - before <= 14
