# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The AD schema knowledge of the LDAP transport, against a recording stand-in for the LDAP connection.

The real connection and DC are exercised by tests/integration/test_domain_contract.py.
"""

from __future__ import annotations

import datetime
import time
import uuid
from unittest import mock

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ldap_transport as _domain_ldap
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    ConnectionSettings,
    DomainConnectionError,
    GmsaSettings,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap_transport import (
    LdapDomainClient,
    datetime_to_filetime,
    filetime_to_datetime,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import LDAPEntry, LDAPError
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import decode_security_descriptor, sid_to_bytes

DOMAIN_DN = "DC=contoso,DC=com"
CONFIGURATION_DN = f"CN=Configuration,{DOMAIN_DN}"
SERVER_DN = f"CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,{CONFIGURATION_DN}"
READER = "S-1-5-21-1004336348-1177238915-682003330-1105"
SETTINGS = GmsaSettings("web.contoso.com", ("host/web",), (READER,), 0x18, None, True)


class RecordingConnection:
    """Answers searches from ``entries`` (DN -> attributes) and records every write."""

    def __init__(self, entries: dict, bind_error: LDAPError | None = None) -> None:
        self.entries = entries
        self.bind_error = bind_error
        self.searches: list[tuple] = []
        self.writes: list[tuple] = []
        self.operation_timeout = 0

    def __call__(self, *args, **kwargs):
        return self

    def open(self):
        if self.bind_error:
            raise self.bind_error
        return self

    def close(self):
        pass

    def rootdse(self, attributes):
        return {
            "defaultNamingContext": [DOMAIN_DN],
            "rootDomainNamingContext": [DOMAIN_DN],
            "configurationNamingContext": [CONFIGURATION_DN],
            "serverName": [SERVER_DN],
        }

    def search(self, base, ldap_filter="(objectClass=*)", attributes=(), scope="subtree"):
        self.searches.append((base, ldap_filter, scope))
        if scope == "base":
            if base not in self.entries:
                raise LDAPError(f"no such object {base}", 32)
            return [LDAPEntry(base, self.entries[base])]
        return []

    def add(self, dn, attributes):
        """Store the entry as a DC returns it: every value as bytes, plus what the DC adds itself."""
        self.writes.append(("add", dn, attributes))
        stored = {name: [_encoded(value) for value in (values if isinstance(values, list) else [values])] for name, values in attributes.items()}
        stored.update(cn=[dn.split(",")[0][3:].encode()], objectSid=[sid_to_bytes(READER[:-4] + "1110")], objectGUID=[uuid.uuid4().bytes_le])
        self.entries[dn] = stored

    def modify(self, dn, changes):
        self.writes.append(("modify", dn, list(changes)))

    def delete(self, dn):
        self.writes.append(("delete", dn))


def _encoded(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def client_with(connection: RecordingConnection) -> LdapDomainClient:
    settings = ConnectionSettings(
        transport="ldap", server="dc01.contoso.com", port=389, username="CONTOSO\\admin", password="admin-secret",
        auth="ntlm", tls="none", validate_certs=True, ca_cert=None, timeout=60,
    )
    with mock.patch.object(_domain_ldap, "LDAPConnection", connection):
        return LdapDomainClient(settings, time.monotonic() + 60)


def test_filter_values_are_escaped():
    connection = RecordingConnection({})
    client = client_with(connection)
    assert client.find_gmsas(["*)(objectClass=*"]) == {}
    assert client.resolve_principals(["a)(b", "S-1-5-32-544"]) == {}
    gmsa_filter, principal_filter = connection.searches[0][1], connection.searches[1][1]
    assert "(sAMAccountName=\\2a\\29\\28objectClass=\\2a$)" in gmsa_filter
    assert "(sAMAccountName=a\\29\\28b)" in principal_filter
    # A SID is matched in its binary form, every byte escaped.
    assert "(objectSid=\\01\\02\\00\\00\\00\\00\\00\\05\\20\\00\\00\\00\\20\\02\\00\\00)" in principal_filter


@pytest.mark.parametrize("enabled, control", [(True, 0x1000), (False, 0x1002)])
def test_create_gmsa_is_one_add_with_every_attribute(enabled, control):
    connection = RecordingConnection({})
    client_with(connection).create_gmsa("web", f"CN=Managed Service Accounts,{DOMAIN_DN}", 30, GmsaSettings(**{**SETTINGS.__dict__, "enabled": enabled}))
    (operation, dn, attributes), = connection.writes
    assert (operation, dn) == ("add", f"CN=web,CN=Managed Service Accounts,{DOMAIN_DN}")
    assert attributes["objectClass"] == "msDS-GroupManagedServiceAccount"
    assert attributes["sAMAccountName"] == "web$"
    assert attributes["userAccountControl"] == control  # without 0x1000 Samba creates it disabled
    assert attributes["msDS-ManagedPasswordInterval"] == 30
    assert attributes["msDS-SupportedEncryptionTypes"] == 0x18
    assert decode_security_descriptor(attributes["msDS-GroupMSAMembership"]).password_readers == (READER,)


def test_enabling_toggles_only_the_disable_bit():
    dn = f"CN=web,CN=Managed Service Accounts,{DOMAIN_DN}"
    connection = RecordingConnection({})
    client = client_with(connection)
    account = client.create_gmsa("web", f"CN=Managed Service Accounts,{DOMAIN_DN}", 30, GmsaSettings(**{**SETTINGS.__dict__, "enabled": False}))
    assert account.settings.enabled is False
    connection.entries[dn]["userAccountControl"] = [str(0x1002 | 0x80000).encode()]  # TRUSTED_FOR_DELEGATION set elsewhere
    client.update_gmsa(account, SETTINGS)
    (_operation, _dn, changes) = connection.writes[-1]
    assert changes == [("replace", "userAccountControl", 0x1000 | 0x80000)]


def test_kds_root_key_takes_the_server_configuration_then_windows_defaults():
    server_configuration = f"{_domain_ldap._KDS_SERVER_CONFIGURATION},{CONFIGURATION_DN}"
    connection = RecordingConnection({
        server_configuration: {"msKds-PrivateKeyLength": [b"256"]},
        SERVER_DN: {"serverReference": [f"CN=DC01,OU=Domain Controllers,{DOMAIN_DN}".encode()]},
    })
    effective = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    key = client_with(connection).create_kds_root_key(effective)
    (operation, dn, attributes), = connection.writes
    assert dn == f"CN={key.key_id},{_domain_ldap._KDS_CONTAINER},{CONFIGURATION_DN}"
    assert attributes["objectClass"] == "msKds-ProvRootKey"
    assert attributes["msKds-PrivateKeyLength"] == b"256"  # from the server configuration
    assert attributes["msKds-PublicKeyLength"] == b"2048"  # Add-KdsRootKey's default
    assert attributes["msKds-KDFAlgorithmID"] == b"SP800_108_CTR_HMAC"
    assert attributes["msKds-UseStartTime"] == datetime_to_filetime(effective)
    assert attributes["msKds-DomainID"] == f"CN=DC01,OU=Domain Controllers,{DOMAIN_DN}"
    assert len(attributes["msKds-RootKeyData"]) == 64
    assert key.effective_time == effective


def test_kds_parameter_blobs_have_the_ms_gkdi_layout():
    kdf = _domain_ldap._KDS_DEFAULTS["msKds-KDFParam"]
    assert kdf[16:].decode("utf-16-le") == "SHA512\0"
    secret_agreement = _domain_ldap._KDS_SECRET_AGREEMENT_PARAM
    assert len(secret_agreement) == 12 + 256 + 256
    assert secret_agreement[:12] == bytes.fromhex("0c020000") + b"DHPM" + bytes.fromhex("00010000")


def test_filetime_round_trip():
    moment = datetime.datetime(2026, 11, 28, 22, 33, 53, 311241, tzinfo=datetime.timezone.utc)
    assert filetime_to_datetime(datetime_to_filetime(moment)) == moment
    assert datetime_to_filetime(datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)) == 0


@pytest.mark.parametrize(
    "error, kind",
    [
        (LDAPError("LDAP bind failed: invalid credentials", 49), AuthenticationFailed),
        (LDAPError("cannot reach domain controller", None), DomainConnectionError),
    ],
)
def test_bind_failures(error, kind):
    with pytest.raises(kind):
        client_with(RecordingConnection({}, bind_error=error))
