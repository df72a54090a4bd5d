"""The lab DC is a real Active Directory, reached through the collection's LDAP connection.

Covers every bind the ``ldap`` transport offers (sealed NTLM and Kerberos on 389, LDAPS, StartTLS, simple over
TLS), the domain facts a credential spec needs, and the whole gMSA chain: an allowed user reads the managed
password, another user does not, and a key derived from that password gets a TGT from the real KDC.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
import subprocess
import time
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import (
    SD_FLAGS_DACL,
    LDAPConnection,
    LDAPError,
    escape_dn_value,
    escape_filter_value,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import (
    decode_security_descriptor,
    encode_group_msa_membership,
    sid_from_bytes,
)

pytest_plugins = ("tests.lab.pytest_samba",)

NO_SUCH_OBJECT = 32
WORKSTATION_TRUST_ACCOUNT = 0x1000
NORMAL_ACCOUNT = 0x200
AES128_AES256 = 0x18
AES256_CTS_HMAC_SHA1_96 = 18
# 128-fold of "kerberos", the constant the RFC 3961 DK() derivation encrypts (RFC 3961 A.1 test vector).
KERBEROS_NFOLD = bytes.fromhex("6b65726265726f737b9b5b2b93132b93")


@pytest.fixture(name="kerberos_env")
def fixture_kerberos_env(samba_dc, tmp_path, monkeypatch):
    """Kerberos clients use the lab's krb5.conf and a credential cache of this test only."""
    ccache = tmp_path / "ccache"
    monkeypatch.setenv("KRB5_CONFIG", samba_dc["krb5_config"])
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    return {"KRB5_CONFIG": samba_dc["krb5_config"], "KRB5CCNAME": f"FILE:{ccache}", "PATH": os.environ["PATH"]}


def connect(lab: dict, **options) -> LDAPConnection:
    """A connection to the lab DC (open it with ``with``), as the domain administrator over sealed NTLM unless told otherwise."""
    settings = {
        "address": lab["host"],
        "auth_protocol": "ntlm",
        "username": f"{lab['netbios_name']}\\{lab['admin_user']}",
        "password": lab["admin_password"],
        "ca_cert": lab["ca_cert"],
        "connect_timeout": 5,
        "operation_timeout": 30,
    }
    settings.update(options)
    return LDAPConnection(lab["dc_hostname"], **settings)


def read_domain_facts(connection: LDAPConnection) -> dict:
    """What New-CredentialSpec reads from AD."""
    rootdse = connection.rootdse(["defaultNamingContext", "rootDomainNamingContext", "configurationNamingContext"])
    domain_dn = rootdse["defaultNamingContext"][0]
    domain = connection.search(domain_dn, attributes=["objectSid", "objectGUID"], scope="base")[0]
    cross_ref = connection.search(
        f"CN=Partitions,{rootdse['configurationNamingContext'][0]}",
        f"(&(objectClass=crossRef)(nCName={escape_filter_value(domain_dn)}))",
        ["nETBIOSName", "dnsRoot"],
        scope="one",
    )[0]
    return {
        "domain_dn": domain_dn,
        "sid": sid_from_bytes(domain.values("objectSid")[0]),
        "guid": str(uuid.UUID(bytes_le=domain.values("objectGUID")[0])),
        "dns_name": cross_ref.values("dnsRoot")[0].decode(),
        "forest_root_dn": rootdse["rootDomainNamingContext"][0],
        "netbios_name": cross_ref.values("nETBIOSName")[0].decode(),
    }


def test_sealed_ntlm_bind_reads_the_domain_facts_of_a_credential_spec(samba_dc):
    with connect(samba_dc) as connection:
        facts = read_domain_facts(connection)

    assert re.fullmatch(r"S-1-5-21-\d+-\d+-\d+", facts["sid"])
    assert uuid.UUID(facts["guid"]).version is not None
    assert facts["domain_dn"] == samba_dc["base_dn"]
    assert facts["dns_name"] == samba_dc["dns_domain"]
    assert facts["forest_root_dn"] == samba_dc["base_dn"]
    assert facts["netbios_name"] == samba_dc["netbios_name"]


def test_sealed_kerberos_bind_with_a_password(samba_dc, kerberos_env):
    with connect(samba_dc, auth_protocol="kerberos", username=f"{samba_dc['admin_user']}@{samba_dc['realm']}") as connection:
        assert connection.rootdse(["dnsHostName"])["dnsHostName"][0].lower() == samba_dc["dc_hostname"]


def test_sealed_kerberos_bind_from_a_credential_cache(samba_dc, kerberos_env):
    principal = f"{samba_dc['admin_user']}@{samba_dc['realm']}"
    subprocess.run(["kinit", principal], input=f"{samba_dc['admin_password']}\n", text=True, env=kerberos_env, check=True, capture_output=True)

    with connect(samba_dc, auth_protocol="kerberos", username=None, password=None) as connection:
        assert connection.rootdse(["defaultNamingContext"])["defaultNamingContext"] == [samba_dc["base_dn"]]


@pytest.mark.parametrize("tls_mode", ["ldaps", "start_tls"])
def test_kerberos_bind_over_tls_with_channel_binding(samba_dc, kerberos_env, tls_mode):
    username = f"{samba_dc['admin_user']}@{samba_dc['realm']}"
    with connect(samba_dc, tls_mode=tls_mode, auth_protocol="kerberos", username=username) as connection:
        assert connection.url.startswith("ldaps://" if tls_mode == "ldaps" else "ldap://")
        assert connection.rootdse(["defaultNamingContext"])["defaultNamingContext"] == [samba_dc["base_dn"]]


def test_simple_bind_over_ldaps(samba_dc):
    username = f"{samba_dc['admin_user']}@{samba_dc['dns_domain']}"
    with connect(samba_dc, tls_mode="ldaps", auth_protocol="simple", username=username) as connection:
        assert connection.rootdse(["defaultNamingContext"])["defaultNamingContext"] == [samba_dc["base_dn"]]


def test_ldaps_refuses_a_certificate_from_an_unknown_ca(samba_dc):
    with pytest.raises(LDAPError, match="certificate verify failed"):
        connect(samba_dc, tls_mode="ldaps", auth_protocol="simple", username="nobody", ca_cert=None).open()


def test_wrong_password_names_server_and_user_but_not_the_password(samba_dc):
    wrong_password = f"Wrong-{secrets.token_hex(8)}"
    with pytest.raises(LDAPError) as caught:
        connect(samba_dc, password=wrong_password).open()

    message = str(caught.value)
    assert message.startswith(f"LDAP bind to ldap://{samba_dc['dc_hostname']}:389 as {samba_dc['netbios_name']}\\Administrator failed: invalid credentials")
    assert wrong_password not in message
    assert caught.value.result_code == 49


def test_closed_port_is_reported_as_unreachable(samba_dc):
    with pytest.raises(LDAPError, match=r"cannot reach domain controller ldap://.*:1 \(at 127\.0\.0\.1\)"):
        connect(samba_dc, port=1).open()


@pytest.fixture(name="cleanup")
def fixture_cleanup(samba_dc):
    """DNs to delete after the test, whatever its outcome; the last created goes first."""
    created: list[str] = []
    yield created
    with connect(samba_dc) as connection:
        for dn in reversed(created):
            try:
                connection.delete(dn)
            except LDAPError as error:
                if error.result_code != NO_SUCH_OBJECT:
                    raise


def create_user(connection: LDAPConnection, lab: dict, cleanup: list, password: str) -> tuple[str, str]:
    """An enabled domain user with ``password``; returns its sAMAccountName and SID."""
    name = f"wgt{secrets.token_hex(4)}"
    dn = f"CN={escape_dn_value(name)},CN=Users,{lab['base_dn']}"
    connection.add(dn, {
        "objectClass": "user",
        "sAMAccountName": name,
        "userPrincipalName": f"{name}@{lab['dns_domain']}",
        # AD takes a new password only as the quoted UTF-16 string, and only over a protected connection.
        "unicodePwd": f'"{password}"'.encode("utf-16-le"),
        "userAccountControl": NORMAL_ACCOUNT,
    })
    cleanup.append(dn)
    sid = sid_from_bytes(connection.search(dn, attributes=["objectSid"], scope="base")[0].values("objectSid")[0])
    return name, sid


def test_add_modify_search_delete(samba_dc, cleanup):
    with connect(samba_dc) as connection:
        name = create_user(connection, samba_dc, cleanup, f"Pw-{secrets.token_urlsafe(12)}")[0]
        dn = cleanup[-1]
        connection.modify(dn, [("replace", "description", "first"), ("add", "otherTelephone", ["1", "2"])])
        connection.modify(dn, [("delete", "otherTelephone", ["1"])])

        entry = connection.search(samba_dc["base_dn"], f"(sAMAccountName={escape_filter_value(name)})", ["description", "otherTelephone"])[0]
        assert entry.dn.lower() == dn.lower()
        assert entry.values("description") == [b"first"]
        assert entry.values("othertelephone") == [b"2"]

        # Pages of two entries: the paged results cookie has to be followed to see every user.
        paged = connection.search(samba_dc["base_dn"], "(objectClass=user)", ["sAMAccountName"], page_size=2)
        assert len(paged) == len(connection.search(samba_dc["base_dn"], "(objectClass=user)", ["sAMAccountName"], page_size=0))
        assert name.encode() in [value for entry in paged for value in entry.values("sAMAccountName")]

        connection.delete(dn)
        with pytest.raises(LDAPError) as caught:
            connection.search(dn, scope="base")
        assert caught.value.result_code == NO_SUCH_OBJECT


def parse_managed_password_blob(blob: bytes) -> bytes:
    """The current password (UTF-16LE, without terminator) from an MSDS-MANAGEDPASSWORD_BLOB (MS-ADTS 2.2.19)."""
    version, reserved, length, current, previous, query_interval = struct.unpack_from("<HHIHHH", blob)
    assert (version, reserved, length) == (1, 0, len(blob))
    # The current password runs up to the next field present, less its two-byte NUL terminator.
    return blob[current:(previous or query_interval) - 2]


def aes256_key(password: bytes, salt: bytes) -> bytes:
    """AES256-CTS-HMAC-SHA1-96 string-to-key (RFC 3962): PBKDF2 with 4096 rounds, then DK(key, "kerberos")."""
    intermediate = hashlib.pbkdf2_hmac("sha1", password, salt, 4096, 32)
    encryptor = Cipher(algorithms.AES(intermediate), modes.ECB()).encryptor()
    first_block = encryptor.update(KERBEROS_NFOLD)
    return first_block + encryptor.update(first_block)


def keytab(principal: str, realm: str, kvno: int, enctype: int, key: bytes) -> bytes:
    """An MIT keytab (format 0x0502) holding one key for a single-component principal."""
    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    entry = (
        struct.pack(">H", 1) + counted(realm.encode()) + counted(principal.encode())
        + struct.pack(">IIBH", 1, int(time.time()), kvno & 0xFF, enctype) + counted(key) + struct.pack(">I", kvno)
    )
    return b"\x05\x02" + struct.pack(">i", len(entry)) + entry


def test_gmsa_password_is_readable_by_the_allowed_user_only_and_gets_a_tgt(samba_dc, cleanup, kerberos_env, tmp_path):
    allowed_password = f"Pw-{secrets.token_urlsafe(12)}"
    other_password = f"Pw-{secrets.token_urlsafe(12)}"
    gmsa_name = f"gmsa{secrets.token_hex(3)}"
    gmsa_dn = f"CN={gmsa_name},CN=Managed Service Accounts,{samba_dc['base_dn']}"
    gmsa_fqdn = f"{gmsa_name}.{samba_dc['dns_domain']}"

    with connect(samba_dc) as admin:
        allowed_user, allowed_sid = create_user(admin, samba_dc, cleanup, allowed_password)
        other_user = create_user(admin, samba_dc, cleanup, other_password)[0]
        admin.add(gmsa_dn, {
            "objectClass": "msDS-GroupManagedServiceAccount",
            "sAMAccountName": f"{gmsa_name}$",
            "dNSHostName": gmsa_fqdn,
            "servicePrincipalName": [f"host/{gmsa_name}", f"host/{gmsa_fqdn}"],
            "msDS-ManagedPasswordInterval": 30,
            "msDS-SupportedEncryptionTypes": AES128_AES256,
            # Without it Samba creates the account disabled (4130).
            "userAccountControl": WORKSTATION_TRUST_ACCOUNT,
            "msDS-GroupMSAMembership": encode_group_msa_membership([allowed_sid]),
        })
        cleanup.append(gmsa_dn)
        gmsa = admin.search(gmsa_dn, attributes=["msDS-KeyVersionNumber", "msDS-GroupMSAMembership", "userAccountControl"], scope="base")[0]
        assert gmsa.values("userAccountControl") == [str(WORKSTATION_TRUST_ACCOUNT).encode()]
        assert decode_security_descriptor(gmsa.values("msDS-GroupMSAMembership")[0]).password_readers == (allowed_sid,)
        # The SD flags control trims nTSecurityDescriptor to the parts asked for: here the DACL, no owner.
        object_security = admin.search(gmsa_dn, attributes=["nTSecurityDescriptor"], scope="base", sd_flags=SD_FLAGS_DACL)[0]
        descriptor = decode_security_descriptor(object_security.values("nTSecurityDescriptor")[0])
        assert descriptor.owner is None and descriptor.dacl
        kvno = int(gmsa.values("msDS-KeyVersionNumber")[0])

    with connect(samba_dc, username=f"{samba_dc['netbios_name']}\\{allowed_user}", password=allowed_password) as allowed:
        blob = allowed.search(gmsa_dn, attributes=["msDS-ManagedPassword"], scope="base")[0].values("msDS-ManagedPassword")
    with connect(samba_dc, username=f"{samba_dc['netbios_name']}\\{other_user}", password=other_password) as other:
        assert other.search(gmsa_dn, attributes=["msDS-ManagedPassword"], scope="base")[0].values("msDS-ManagedPassword") == []
    assert len(blob) == 1
    password_utf16 = parse_managed_password_blob(blob[0])
    assert len(password_utf16) == 256

    # MS-KILE 3.1.1.2: a computer account's salt is REALM + "host" + lowercase name without "$" + "." + domain.
    # Kerberos takes the password as UTF-8; unpaired UTF-16 surrogates become U+FFFD, as Windows and Samba do.
    salt = f"{samba_dc['realm']}host{gmsa_name.lower()}.{samba_dc['dns_domain'].lower()}".encode()
    key = aes256_key(password_utf16.decode("utf-16-le", "replace").encode("utf-8"), salt)
    keytab_path = tmp_path / "gmsa.keytab"
    keytab_path.write_bytes(keytab(f"{gmsa_name}$", samba_dc["realm"], kvno, AES256_CTS_HMAC_SHA1_96, key))

    principal = f"{gmsa_name}$@{samba_dc['realm']}"
    kinit = subprocess.run(["kinit", "-k", "-t", str(keytab_path), principal], env=kerberos_env, capture_output=True, text=True, check=False)
    assert kinit.returncode == 0, kinit.stderr
    tickets = subprocess.run(["klist"], env=kerberos_env, capture_output=True, text=True, check=True).stdout
    assert f"Default principal: {principal}" in tickets
    assert f"krbtgt/{samba_dc['realm']}@{samba_dc['realm']}" in tickets
