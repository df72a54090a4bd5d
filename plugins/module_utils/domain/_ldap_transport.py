# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The LDAP transport: the directory objects of the gMSA flow read and written straight on a DC.

The connection (sealing, TLS, escaping, add/modify/delete) is ``_ldap``; this module knows the AD schema:
which classes and attributes make a gMSA, a KDS root key and the portable identity, and how AD encodes
them. Every write is a single LDAP add, modify or delete, so a failure leaves an object as it was.
"""

from __future__ import annotations

import datetime
import secrets
import uuid

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    ConnectionSettings,
    DomainClient,
    DomainConnectionError,
    DomainError,
    DomainFacts,
    DomainUser,
    GmsaAccount,
    GmsaCreation,
    GmsaSettings,
    KdsRootKey,
    Principal,
    each_in_order,
    gmsa_attribute_changes,
    gmsa_from_attributes,
    principal_lookup_attribute,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import LDAPConnection, LDAPError, LDAPEntry, escape_dn_value, escape_filter_value
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import sid_from_bytes, sid_to_bytes

_LDAP_AUTH = {"ntlm": "ntlm", "kerberos": "kerberos", "basic": "simple"}
_LDAP_TLS = {"none": None, "tls": "ldaps", "starttls": "start_tls"}
_NO_SUCH_OBJECT = 32
_INVALID_DN_SYNTAX = 34
_INVALID_CREDENTIALS = 49

# userAccountControl bits (MS-ADTS 2.2.16)
_ACCOUNTDISABLE = 0x2
_NORMAL_ACCOUNT = 0x200
_WORKSTATION_TRUST_ACCOUNT = 0x1000
_DONT_EXPIRE_PASSWORD = 0x10000

# groupType (MS-ADTS 2.2.12): GROUP_TYPE_SECURITY_ENABLED | GROUP_TYPE_ACCOUNT_GROUP, as a signed 32-bit value.
_GLOBAL_SECURITY_GROUP = -2147483646

_GMSA_ATTRIBUTES = (
    "sAMAccountName", "objectSid", "objectGUID", "dNSHostName", "servicePrincipalName", "msDS-GroupMSAMembership",
    "msDS-SupportedEncryptionTypes", "msDS-ManagedPasswordInterval", "description", "userAccountControl",
)
_USER_ATTRIBUTES = ("sAMAccountName", "objectSid", "userAccountControl", "description", "memberOf")
_KDS_ATTRIBUTES = ("cn", "msKds-CreateTime", "msKds-UseStartTime")

_KDS_CONTAINER = "CN=Master Root Keys,CN=Group Key Distribution Service,CN=Services"
_KDS_SERVER_CONFIGURATION = (
    "CN=Group Key Distribution Service Server Configuration,CN=Server Configuration,CN=Group Key Distribution Service,CN=Services"
)
# What Add-KdsRootKey writes when the server configuration object leaves an attribute unset (MS-GKDI 3.1.4.1.1,
# Samba's gkdi_create_root_key): SP800-108 KDF with SHA512, Diffie-Hellman on RFC 5114's 2048-bit group.
_KDS_DEFAULTS = {
    "msKds-Version": b"1",
    "msKds-KDFAlgorithmID": b"SP800_108_CTR_HMAC",
    # KDF parameters (MS-GKDI 2.2.1): 0, 1, byte length of the hash name, 0, then "SHA512\0" in UTF-16LE.
    "msKds-KDFParam": bytes.fromhex("00000000010000000e000000000000005300480041003500310032000000"),
    "msKds-SecretAgreementAlgorithmID": b"DH",
    "msKds-PublicKeyLength": b"2048",
    "msKds-PrivateKeyLength": b"512",
}
# FFC Diffie-Hellman parameters (MS-GKDI 2.2.2): length 0x20c, "DHPM", key length 256, then p and g.
_RFC5114_2048_P = (
    "87a8e61db4b6663cffbbd19c651959998ceef608660dd0f25d2ceed4435e3b00e00df8f1d61957d4faf7df4561b2aa30"
    "16c3d91134096faa3bf4296d830e9a7c209e0c6497517abd5a8a9d306bcf67ed91f9e6725b4758c022e0b1ef4275bf7b"
    "6c5bfc11d45f9088b941f54eb1e59bb8bc39a0bf12307f5c4fdb70c581b23f76b63acae1caa6b7902d52526735488a0ef"
    "13c6d9a51bfa4ab3ad8347796524d8ef6a167b5a41825d967e144e5140564251ccacb83e6b486f6b3ca3f7971506026c0"
    "b857f689962856ded4010abd0be621c3a3960a54e710c375f26375d7014103a4b54330c198af126116d2276e11715f6938"
    "77fad7ef09cadb094ae91e1a1597"
)
_RFC5114_2048_G = (
    "3fb32c9b73134d0b2e77506660edbd484ca7b18f21ef205407f4793a1a0ba12510dbc15077be463fff4fed4aac0bb555be"
    "3a6c1b0c6b47b1bc3773bf7e8c6f62901228f8c28cbb18a55ae31341000a650196f931c77a57f2ddf463e5e9ec144b777d"
    "e62aaab8a8628ac376d282d6ed3864e67982428ebc831d14348f6f2f9193b5045af2767164e1dfc967c1fb3f2e55a4bd1b"
    "ffe83b9c80d052b985d182ea0adb2a3b7313d3fe14c8484b1e052588b9b7d2bbd2df016199ecd06e1557cd0915b3353bbb"
    "64e0ec377fd028370df92b52c7891428cdc67eb6184b523d1db246c32f63078490f00ef8d647d148d47954515e2327cfef"
    "98c582664b4c0f6cc41659"
)
_KDS_SECRET_AGREEMENT_PARAM = bytes.fromhex("0c020000" + b"DHPM".hex() + "00010000" + _RFC5114_2048_P + _RFC5114_2048_G)
_KDS_ROOT_KEY_BYTES = 64

_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)


def filetime_to_datetime(value: int) -> datetime.datetime:
    return _FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)


def datetime_to_filetime(value: datetime.datetime) -> int:
    delta = value - _FILETIME_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**7 + delta.microseconds * 10


def _text(entry: LDAPEntry, name: str) -> str | None:
    values = entry.values(name)
    return values[0].decode("utf-8") if values else None


def _integer(entry: LDAPEntry, name: str) -> int | None:
    text = _text(entry, name)
    return int(text) if text is not None else None


def _guid(entry: LDAPEntry) -> str:
    return str(uuid.UUID(bytes_le=entry.values("objectGUID")[0]))


def _sid(entry: LDAPEntry) -> str:
    return sid_from_bytes(entry.values("objectSid")[0])


def _or_filter(clauses: list[str]) -> str:
    return clauses[0] if len(clauses) == 1 else f"(|{''.join(clauses)})"


class LdapDomainClient(DomainClient):
    def __init__(self, settings: ConnectionSettings, deadline: float) -> None:
        super().__init__(settings.server, deadline)
        self._settings = settings
        self._connection = self._connect(settings.username, settings.password, _LDAP_AUTH[settings.auth])
        rootdse = self._call(
            "reading the rootDSE", self._connection.rootdse, ("defaultNamingContext", "rootDomainNamingContext", "configurationNamingContext", "serverName")
        )
        self._domain_dn = rootdse["defaultNamingContext"][0]
        self._forest_dn = rootdse["rootDomainNamingContext"][0]
        self._configuration_dn = rootdse["configurationNamingContext"][0]
        self._server_object_dn = rootdse["serverName"][0]
        self._facts: DomainFacts | None = None

    def _connect(self, username: str | None, password: str | None, auth_protocol: str) -> LDAPConnection:
        settings = self._settings
        connection = LDAPConnection(
            settings.server,
            port=settings.port,
            tls_mode=_LDAP_TLS[settings.tls],
            auth_protocol=auth_protocol,
            username=username,
            password=password,
            ca_cert=settings.ca_cert,
            validate_certs=settings.validate_certs,
            connect_timeout=min(self.remaining_time(), 10),
            operation_timeout=self.remaining_time(),
        )
        try:
            return connection.open()
        except LDAPError as error:
            if error.result_code == _INVALID_CREDENTIALS:
                raise AuthenticationFailed(str(error)) from None
            raise DomainConnectionError(str(error)) from None

    def _call(self, what: str, method, *args, **kwargs):
        """Run one LDAP operation within the deadline; its failure becomes a DomainError."""
        self._connection.operation_timeout = self.remaining_time()
        try:
            return method(*args, **kwargs)
        except LDAPError as error:
            raise DomainError(f"{self.server}: {what}: {error}") from None

    def close(self) -> None:
        self._connection.close()

    def _search(self, what: str, base: str, ldap_filter: str, attributes, scope: str = "subtree") -> list[LDAPEntry]:
        return self._call(what, self._connection.search, base, ldap_filter, attributes, scope)

    def _read(self, dn: str, attributes) -> LDAPEntry:
        """The entry ``dn`` itself (a base search)."""
        return self._search(f"reading {dn}", dn, "(objectClass=*)", attributes, "base")[0]

    def domain_facts(self) -> DomainFacts:
        if self._facts is None:
            domain = self._read(self._domain_dn, ("objectSid", "objectGUID"))
            cross_refs = self._search(
                "reading the domain's naming contexts",
                f"CN=Partitions,{self._configuration_dn}",
                f"(&(objectClass=crossRef)(|(nCName={escape_filter_value(self._domain_dn)})(nCName={escape_filter_value(self._forest_dn)})))",
                ("nCName", "dnsRoot", "nETBIOSName"),
                "one",
            )
            by_naming_context = {(_text(entry, "nCName") or "").lower(): entry for entry in cross_refs}
            domain_ref = by_naming_context[self._domain_dn.lower()]
            self._facts = DomainFacts(
                distinguished_name=self._domain_dn,
                dns_name=_text(domain_ref, "dnsRoot"),
                dns_tree_name=_text(by_naming_context[self._forest_dn.lower()], "dnsRoot"),
                netbios_name=_text(domain_ref, "nETBIOSName"),
                sid=_sid(domain),
                guid=_guid(domain),
            )
        return self._facts

    def container_exists(self, dn: str) -> bool:
        self._connection.operation_timeout = self.remaining_time()
        try:
            self._connection.search(dn, "(objectClass=*)", ("objectClass",), "base")
        except LDAPError as error:
            if error.result_code in (_NO_SUCH_OBJECT, _INVALID_DN_SYNTAX):
                return False
            raise DomainError(f"{self.server}: reading {dn}: {error}") from None
        return True

    # --- gMSAs ------------------------------------------------------------------------------------------------

    def find_gmsas(self, names: list[str]) -> dict[str, GmsaAccount]:
        if not names:
            return {}
        clauses = [f"(sAMAccountName={escape_filter_value(name + '$')})" for name in names]
        entries = self._search(
            "searching gMSAs",
            self._domain_dn,
            f"(&(objectClass=msDS-GroupManagedServiceAccount){_or_filter(clauses)})",
            _GMSA_ATTRIBUTES,
        )
        accounts = (self._gmsa(entry) for entry in entries)
        return {account.name.lower(): account for account in accounts}

    def _find_gmsa(self, dn: str) -> GmsaAccount:
        return self._gmsa(self._read(dn, _GMSA_ATTRIBUTES))

    @staticmethod
    def _gmsa(entry: LDAPEntry) -> GmsaAccount:
        sam_account_name = _text(entry, "sAMAccountName")
        membership = entry.values("msDS-GroupMSAMembership")
        return gmsa_from_attributes({
            "name": sam_account_name.removesuffix("$"),
            "sam_account_name": sam_account_name,
            "distinguished_name": entry.dn,
            "sid": _sid(entry),
            "object_guid": _guid(entry),
            "password_interval_days": _integer(entry, "msDS-ManagedPasswordInterval"),
            "dns_host_name": _text(entry, "dNSHostName"),
            "spns": [value.decode("utf-8") for value in entry.values("servicePrincipalName")],
            "membership": membership[0] if membership else None,
            "encryption_types": _integer(entry, "msDS-SupportedEncryptionTypes"),
            "description": _text(entry, "description"),
            "enabled": not (_integer(entry, "userAccountControl") or 0) & _ACCOUNTDISABLE,
        })

    def create_gmsa(self, name: str, container: str, password_interval_days: int, settings: GmsaSettings) -> GmsaAccount:
        return self._find_gmsa(self._add_gmsa(GmsaCreation(name, container, password_interval_days, settings)))

    def create_gmsas(self, creations: list[GmsaCreation]) -> list[GmsaAccount]:
        # One search reads them all back afterwards, not one read per account.
        each_in_order(creations, self._add_gmsa)
        return self._read_back([new.name for new in creations])

    def _add_gmsa(self, new: GmsaCreation) -> str:
        dn = f"CN={escape_dn_value(new.name)},{new.container}"
        attributes = gmsa_attribute_changes(None, new.settings)[0]
        attributes.update({
            "objectClass": "msDS-GroupManagedServiceAccount",
            "sAMAccountName": f"{new.name}$",
            "msDS-ManagedPasswordInterval": new.password_interval_days,
            # Without WORKSTATION_TRUST_ACCOUNT Samba creates the account disabled (4130).
            "userAccountControl": _WORKSTATION_TRUST_ACCOUNT | (0 if new.settings.enabled else _ACCOUNTDISABLE),
        })
        self._call(f"creating gMSA {new.name}", self._connection.add, dn, attributes)
        return dn

    def update_gmsa(self, account: GmsaAccount, settings: GmsaSettings) -> GmsaAccount:
        self._modify_gmsa((account, settings))
        return self._find_gmsa(account.distinguished_name)

    def update_gmsas(self, updates: list[tuple[GmsaAccount, GmsaSettings]]) -> list[GmsaAccount]:
        each_in_order(updates, self._modify_gmsa)
        return self._read_back([account.name for account, _settings in updates])

    def _modify_gmsa(self, update: tuple[GmsaAccount, GmsaSettings]) -> None:
        account, settings = update
        replace, clear = gmsa_attribute_changes(account.settings, settings, account.membership)
        changes = [("replace", name, value) for name, value in replace.items()]
        changes += [("delete", name, []) for name in clear]
        if settings.enabled != account.settings.enabled:
            changes.append(("replace", "userAccountControl", self._toggled_disable_bit(account.distinguished_name, settings.enabled)))
        if changes:
            self._call(f"updating gMSA {account.name}", self._connection.modify, account.distinguished_name, changes)

    def _read_back(self, names: list[str]) -> list[GmsaAccount]:
        found = self.find_gmsas(names)
        return [found[name.lower()] for name in names]

    def _toggled_disable_bit(self, dn: str, enabled: bool) -> int:
        control = _integer(self._read(dn, ("userAccountControl",)), "userAccountControl") or 0
        return control & ~_ACCOUNTDISABLE if enabled else control | _ACCOUNTDISABLE

    def delete_gmsa(self, account: GmsaAccount) -> None:
        self._call(f"deleting gMSA {account.name}", self._connection.delete, account.distinguished_name)

    def resolve_principals(self, identities: list[str]) -> dict[str, Principal]:
        if not identities:
            return {}
        clauses = []
        for identity in identities:
            attribute = principal_lookup_attribute(identity)
            value = sid_to_bytes(identity) if attribute == "objectSid" else identity
            clauses.append(f"({attribute}={escape_filter_value(value)})")
        entries = self._search("looking up principals", self._domain_dn, f"(&(objectSid=*){_or_filter(clauses)})", ("objectSid", "sAMAccountName"))
        # Well-known principals (BUILTIN\..., S-1-5-32-...) live under CN=Builtin, which is part of the domain NC.
        principals = [Principal(sid=_sid(entry), distinguished_name=entry.dn, sam_account_name=_text(entry, "sAMAccountName")) for entry in entries]
        resolved = {}
        for identity in identities:
            key = identity.lower()
            for principal in principals:
                if key in (principal.sid.lower(), principal.distinguished_name.lower(), (principal.sam_account_name or "").lower()):
                    resolved[identity] = principal
        return resolved

    # --- KDS root keys ----------------------------------------------------------------------------------------

    def kds_root_keys(self) -> list[KdsRootKey]:
        entries = self._search("reading KDS root keys", f"{_KDS_CONTAINER},{self._configuration_dn}", "(objectClass=msKds-ProvRootKey)", _KDS_ATTRIBUTES, "one")
        return [self._kds_root_key(entry) for entry in entries]

    @staticmethod
    def _kds_root_key(entry: LDAPEntry) -> KdsRootKey:
        return KdsRootKey(
            key_id=_text(entry, "cn"),
            created=filetime_to_datetime(_integer(entry, "msKds-CreateTime")),
            effective_time=filetime_to_datetime(_integer(entry, "msKds-UseStartTime")),
        )

    def create_kds_root_key(self, effective_time: datetime.datetime) -> KdsRootKey:
        """Add an ``msKds-ProvRootKey`` as Add-KdsRootKey does, with the forest's KDS server configuration."""
        configuration = self._read(f"{_KDS_SERVER_CONFIGURATION},{self._configuration_dn}", (*_KDS_DEFAULTS, "msKds-SecretAgreementParam"))
        server = self._read(self._server_object_dn, ("serverReference",))
        key_id = str(uuid.uuid4())
        attributes = {name: (configuration.values(name) or [default])[0] for name, default in _KDS_DEFAULTS.items()}
        attributes.update({
            "objectClass": "msKds-ProvRootKey",
            "msKds-SecretAgreementParam": (configuration.values("msKds-SecretAgreementParam") or [_KDS_SECRET_AGREEMENT_PARAM])[0],
            "msKds-RootKeyData": secrets.token_bytes(_KDS_ROOT_KEY_BYTES),
            "msKds-CreateTime": datetime_to_filetime(datetime.datetime.now(datetime.timezone.utc)),
            "msKds-UseStartTime": datetime_to_filetime(effective_time),
            # The computer object of the DC that created the key, as Add-KdsRootKey records it.
            "msKds-DomainID": _text(server, "serverReference"),
        })
        dn = f"CN={key_id},{_KDS_CONTAINER},{self._configuration_dn}"
        self._call("creating a KDS root key", self._connection.add, dn, attributes)
        return self._kds_root_key(self._read(dn, _KDS_ATTRIBUTES))

    # --- the portable identity --------------------------------------------------------------------------------

    def find_user(self, name: str) -> DomainUser | None:
        user_filter = f"(&(objectCategory=person)(objectClass=user)(sAMAccountName={escape_filter_value(name)}))"
        entries = self._search(f"searching user {name}", self._domain_dn, user_filter, _USER_ATTRIBUTES)
        return self._user(entries[0]) if entries else None

    @staticmethod
    def _user(entry: LDAPEntry) -> DomainUser:
        control = _integer(entry, "userAccountControl") or 0
        return DomainUser(
            name=_text(entry, "sAMAccountName"),
            distinguished_name=entry.dn,
            sid=_sid(entry),
            enabled=not control & _ACCOUNTDISABLE,
            password_never_expires=bool(control & _DONT_EXPIRE_PASSWORD),
            description=_text(entry, "description"),
            groups=tuple(value.decode("utf-8") for value in entry.values("memberOf")),
        )

    def _read_user(self, dn: str) -> DomainUser:
        return self._user(self._read(dn, _USER_ATTRIBUTES))

    @staticmethod
    def _user_account_control(enabled: bool, password_never_expires: bool) -> int:
        return _NORMAL_ACCOUNT | (0 if enabled else _ACCOUNTDISABLE) | (_DONT_EXPIRE_PASSWORD if password_never_expires else 0)

    @staticmethod
    def _unicode_pwd(password: str) -> bytes:
        # AD takes a password only as the quoted UTF-16LE string in unicodePwd, over an encrypted connection.
        return f'"{password}"'.encode("utf-16-le")

    def create_user(self, name: str, container: str, password: str, description: str | None, enabled: bool, password_never_expires: bool) -> DomainUser:
        dn = f"CN={escape_dn_value(name)},{container}"
        attributes = {
            "objectClass": "user",
            "sAMAccountName": name,
            "userPrincipalName": f"{name}@{self.domain_facts().dns_name}",
            "unicodePwd": self._unicode_pwd(password),
            "userAccountControl": self._user_account_control(enabled, password_never_expires),
        }
        if description:
            attributes["description"] = description
        self._call(f"creating user {name}", self._connection.add, dn, attributes)
        return self._read_user(dn)

    def update_user(self, user: DomainUser, *, description: str | None, enabled: bool, password_never_expires: bool, password: str | None) -> DomainUser:
        changes = []
        if password is not None:
            changes.append(("replace", "unicodePwd", self._unicode_pwd(password)))
        if (description or None) != user.description:
            changes.append(("replace", "description", [description] if description else []))
        if (enabled, password_never_expires) != (user.enabled, user.password_never_expires):
            control = _integer(self._read(user.distinguished_name, ("userAccountControl",)), "userAccountControl")
            control &= ~(_ACCOUNTDISABLE | _DONT_EXPIRE_PASSWORD)
            changes.append(("replace", "userAccountControl", control | self._user_account_control(enabled, password_never_expires)))
        if changes:
            self._call(f"updating user {user.name}", self._connection.modify, user.distinguished_name, changes)
        return self._read_user(user.distinguished_name)

    def delete_user(self, user: DomainUser) -> None:
        self._call(f"deleting user {user.name}", self._connection.delete, user.distinguished_name)

    def create_group(self, name: str, container: str) -> Principal:
        dn = f"CN={escape_dn_value(name)},{container}"
        attributes = {"objectClass": "group", "sAMAccountName": name, "groupType": _GLOBAL_SECURITY_GROUP}
        self._call(f"creating group {name}", self._connection.add, dn, attributes)
        entry = self._read(dn, ("objectSid", "sAMAccountName"))
        return Principal(sid=_sid(entry), distinguished_name=entry.dn, sam_account_name=name)

    def set_group_members(self, group_dn: str, add: list[str], remove: list[str]) -> None:
        changes = ([("add", "member", add)] if add else []) + ([("delete", "member", remove)] if remove else [])
        if changes:
            self._call(f"changing the members of {group_dn}", self._connection.modify, group_dn, changes)

    # --- checks made as the identity ----------------------------------------------------------------------------

    def _identity_username(self, username: str) -> str:
        return username if "\\" in username or "@" in username else f"{self.domain_facts().netbios_name}\\{username}"

    def credentials_valid(self, username: str, password: str) -> bool:
        try:
            self._connect(self._identity_username(username), password, "negotiate").close()
        except AuthenticationFailed:
            return False
        return True

    def read_managed_password(self, account: GmsaAccount, username: str, password: str) -> bytes | None:
        connection = self._connect(self._identity_username(username), password, "negotiate")
        try:
            entry = connection.search(account.distinguished_name, "(objectClass=*)", ("msDS-ManagedPassword",), "base")[0]
        except LDAPError as error:
            raise DomainError(f"{self.server}: reading the password of {account.name} as {username}: {error}") from None
        finally:
            connection.close()
        values = entry.values("msDS-ManagedPassword")
        return values[0] if values else None
