# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one Active Directory client of the domain modules, with a WinRM and an LDAP transport.

Modules decide what must change (in Python, once for both transports); a client only reads and writes
directory objects. :class:`DomainClient` is that contract: ``_domain_winrm`` implements it with PowerShell's
ActiveDirectory module on a DC or management host, ``_domain_ldap`` with sealed LDAP straight to a DC. Both
speak the same data classes below, so one contract test suite covers both.
"""

from __future__ import annotations

import abc
import datetime
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ansible.module_utils.errors import AnsibleFallbackNotFound
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import (
    decode_security_descriptor,
    encode_group_msa_membership,
    rewrite_password_readers,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_sid

# msDS-SupportedEncryptionTypes bits (MS-KILE 2.2.7); DES is left out on purpose: Windows disables it.
ENCRYPTION_TYPES = {"rc4": 0x4, "aes128": 0x8, "aes256": 0x10}
DEFAULT_ENCRYPTION_TYPES = ("aes128", "aes256")
DEFAULT_PASSWORD_INTERVAL_DAYS = 30

# DCs wait this long after a KDS root key's effective time before they use it (replication safety).
KDS_REPLICATION_DELAY = datetime.timedelta(hours=10)

_TRANSPORT_DEFAULT_PORTS = {("winrm", False): 5985, ("winrm", True): 5986, ("ldap", False): 389, ("ldap", True): 636}


class DomainError(Exception):
    """A domain operation failed; ``str()`` is the message for the user, naming the server or the field."""


class DomainConnectionError(DomainError):
    """The DC (or WinRM host) could not be reached, or refused the credentials."""


class AuthenticationFailed(DomainConnectionError):
    """The domain refused a user name and password."""


@dataclass(frozen=True)
class DomainFacts:
    """What a credential spec needs from the domain (the keys ``_credspec.build_credspec`` reads)."""

    distinguished_name: str
    dns_name: str
    dns_tree_name: str
    netbios_name: str
    sid: str
    guid: str


@dataclass(frozen=True)
class Principal:
    """A security principal that may be allowed to retrieve a gMSA password, or hold group members."""

    sid: str
    distinguished_name: str
    sam_account_name: str


@dataclass(frozen=True)
class GmsaSettings:
    """The attributes of a gMSA the modules manage; ``password_readers`` are SIDs."""

    dns_host_name: str
    spns: tuple[str, ...]
    password_readers: tuple[str, ...]
    encryption_types: int
    description: str | None
    enabled: bool


@dataclass(frozen=True)
class GmsaAccount:
    """A gMSA as it is in AD."""

    name: str
    sam_account_name: str
    distinguished_name: str
    sid: str
    object_guid: str
    password_interval_days: int
    settings: GmsaSettings
    # msDS-GroupMSAMembership as read: a rewrite keeps the ACEs of it that settings do not describe.
    membership: bytes | None = None


@dataclass(frozen=True)
class KdsRootKey:
    key_id: str
    created: datetime.datetime
    effective_time: datetime.datetime

    @property
    def usable_from(self) -> datetime.datetime:
        return self.effective_time + KDS_REPLICATION_DELAY


@dataclass(frozen=True)
class DomainUser:
    """The portable identity: a standard user whose credentials the Windows nodes use."""

    name: str
    distinguished_name: str
    sid: str
    enabled: bool
    password_never_expires: bool
    description: str | None
    groups: tuple[str, ...] = field(default=())  # distinguished names of the groups it is a direct member of


@dataclass(frozen=True)
class GmsaCreation:
    """A gMSA to create: its name, the container (a DN) it goes into, and what it holds."""

    name: str
    container: str
    password_interval_days: int
    settings: GmsaSettings


class BatchFailed(DomainError):
    """A batch stopped at its first failure: the first ``done`` items were carried out, the next one failed, and
    the rest were not attempted."""

    def __init__(self, message: str, done: int) -> None:
        super().__init__(message)
        self.done = done


def each_in_order(items: list, operation) -> list:
    """``operation`` on each item in turn; the first failure stops the rest and raises :class:`BatchFailed`."""
    results = []
    for item in items:
        try:
            results.append(operation(item))
        except BatchFailed:
            raise
        except DomainError as error:
            raise BatchFailed(str(error), len(results)) from None
    return results


class DomainClient(abc.ABC):
    """Read and write the directory objects of the gMSA flow. Every method raises :class:`DomainError`.

    Names are sAMAccountNames (a gMSA's without ``$``), compared case-insensitively as AD does.
    """

    def __init__(self, server: str, deadline: float) -> None:
        self.server = server
        self._deadline = deadline

    def remaining_time(self) -> float:
        """Seconds left before the module's overall deadline; raises once it has passed."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise DomainConnectionError(f"{self.server}: the domain operations did not finish within the timeout (domain_timeout)")
        return remaining

    def __enter__(self) -> DomainClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection (idempotent)."""

    @abc.abstractmethod
    def domain_facts(self) -> DomainFacts:
        """Facts of the domain the client is connected to."""

    @abc.abstractmethod
    def container_exists(self, dn: str) -> bool:
        """Whether the container or OU ``dn`` exists (checked before anything is created in it)."""

    @abc.abstractmethod
    def find_gmsas(self, names: list[str]) -> dict[str, GmsaAccount]:
        """The gMSAs among ``names`` that exist, keyed by lower-case name."""

    @abc.abstractmethod
    def create_gmsa(self, name: str, container: str, password_interval_days: int, settings: GmsaSettings) -> GmsaAccount:
        """Create a gMSA in ``container`` (a DN), enabled or not as ``settings`` says."""

    @abc.abstractmethod
    def update_gmsa(self, account: GmsaAccount, settings: GmsaSettings) -> GmsaAccount:
        """Write the fields of ``settings`` that differ from ``account.settings``, in one modification."""

    @abc.abstractmethod
    def delete_gmsa(self, account: GmsaAccount) -> None:
        """Delete the gMSA."""

    # Batches: one call for the accounts of a module run, each in order, stopping at the first failure
    # (:class:`BatchFailed` says how many were carried out). A transport overrides them where a batch costs
    # fewer round trips than its items one by one.

    def create_gmsas(self, creations: list[GmsaCreation]) -> list[GmsaAccount]:
        """:meth:`create_gmsa` for each; the accounts as created, in order."""
        return each_in_order(creations, lambda new: self.create_gmsa(new.name, new.container, new.password_interval_days, new.settings))

    def update_gmsas(self, updates: list[tuple[GmsaAccount, GmsaSettings]]) -> list[GmsaAccount]:
        """:meth:`update_gmsa` for each ``(account, settings)``; the accounts as updated, in order."""
        return each_in_order(updates, lambda update: self.update_gmsa(*update))

    def delete_gmsas(self, accounts: list[GmsaAccount]) -> None:
        """:meth:`delete_gmsa` for each."""
        each_in_order(accounts, self.delete_gmsa)

    @abc.abstractmethod
    def resolve_principals(self, identities: list[str]) -> dict[str, Principal]:
        """Look up users, groups and computers by sAMAccountName, SID or DN; unknown ones are left out."""

    @abc.abstractmethod
    def kds_root_keys(self) -> list[KdsRootKey]:
        """The KDS root keys of the forest."""

    @abc.abstractmethod
    def create_kds_root_key(self, effective_time: datetime.datetime) -> KdsRootKey:
        """Add a KDS root key whose use starts at ``effective_time``."""

    @abc.abstractmethod
    def find_user(self, name: str) -> DomainUser | None:
        """The user with this sAMAccountName, or ``None``."""

    @abc.abstractmethod
    def create_user(self, name: str, container: str, password: str, description: str | None, enabled: bool, password_never_expires: bool) -> DomainUser:
        """Create a user with its password set (the password must satisfy the domain's policy)."""

    @abc.abstractmethod
    def update_user(self, user: DomainUser, *, description: str | None, enabled: bool, password_never_expires: bool, password: str | None) -> DomainUser:
        """Change what differs, and set ``password`` when it is given."""

    @abc.abstractmethod
    def delete_user(self, user: DomainUser) -> None:
        """Delete the user."""

    @abc.abstractmethod
    def create_group(self, name: str, container: str) -> Principal:
        """Create a global security group (New-ADGroup -GroupScope Global -GroupCategory Security)."""

    @abc.abstractmethod
    def set_group_members(self, group_dn: str, add: list[str], remove: list[str]) -> None:
        """Add and remove members (DNs) of a group in one modification."""

    @abc.abstractmethod
    def credentials_valid(self, username: str, password: str) -> bool:
        """Whether the domain accepts this user's password (used for ``update_password: always``)."""

    @abc.abstractmethod
    def read_managed_password(self, account: GmsaAccount, username: str, password: str) -> bytes | None:
        """Read the gMSA's ``msDS-ManagedPassword`` blob authenticated as ``username``; ``None`` if refused."""


@dataclass(frozen=True)
class KdsRootKeyPlan:
    """What a run finds, or will make, of the forest's KDS root key: the key DCs use (``key_id`` None for one still to
    be created, or in check mode), and ``create`` when the forest has none yet."""

    key_id: str | None
    effective_time: datetime.datetime
    create: bool

    def facts(self, now: datetime.datetime) -> dict[str, Any]:
        usable_from = self.effective_time + KDS_REPLICATION_DELAY
        return dict(key_id=self.key_id, effective_time=self.effective_time.isoformat(), usable_from=usable_from.isoformat(), usable=usable_from <= now)


def plan_kds_root_key(client: DomainClient, create: bool, lab_mode: bool, now: datetime.datetime, create_option: str) -> KdsRootKeyPlan:
    """The key that matters, the newest usable one, else the one usable first; or, when the forest has none and
    ``create`` allows it, the key to create: effective now, or 10 hours ago in ``lab_mode`` so that DCs use it at once.
    ``create_option`` names the option that refused a creation in the error."""
    keys = client.kds_root_keys()
    if keys:
        usable = [key for key in keys if key.usable_from <= now]
        key = max(usable, key=lambda key: key.created) if usable else min(keys, key=lambda key: key.usable_from)
        return KdsRootKeyPlan(key.key_id, key.effective_time, create=False)
    if not create:
        raise DomainError(f"{client.server}: the forest has no KDS root key and {create_option} is false; ask the directory team for one (Add-KdsRootKey)")
    return KdsRootKeyPlan(None, now - KDS_REPLICATION_DELAY if lab_mode else now, create=True)


def create_planned_kds_root_key(client: DomainClient, plan: KdsRootKeyPlan) -> KdsRootKeyPlan:
    """Create the key ``plan`` asks for; return the plan with its key."""
    return replace(plan, key_id=client.create_kds_root_key(plan.effective_time).key_id)


def kds_root_key_warning(facts: dict[str, Any]) -> str | None:
    """The warning a new key that DCs do not use yet deserves."""
    if facts["usable"]:
        return None
    return (
        f"the new KDS root key becomes usable at {facts['usable_from']}: DCs wait 10 hours for it to replicate, "
        "and gMSA password retrieval fails until then"
    )


def principal_lookup_attribute(identity: str) -> str:
    """The attribute that identifies a principal written as ``identity``: a SID, a DN or a sAMAccountName."""
    try:
        validate_sid(identity, "identity")
        return "objectSid"
    except ValidationError:
        return "distinguishedName" if "=" in identity else "sAMAccountName"


def gmsa_from_attributes(values: dict[str, Any]) -> GmsaAccount:
    """Build a :class:`GmsaAccount` from what a transport read (``membership`` is the raw security descriptor)."""
    membership = values["membership"]
    return GmsaAccount(
        name=values["name"],
        sam_account_name=values["sam_account_name"],
        distinguished_name=values["distinguished_name"],
        sid=values["sid"],
        object_guid=values["object_guid"],
        password_interval_days=values["password_interval_days"] or DEFAULT_PASSWORD_INTERVAL_DAYS,
        settings=GmsaSettings(
            dns_host_name=values["dns_host_name"] or "",
            spns=tuple(sorted(values["spns"] or (), key=str.lower)),
            password_readers=decode_security_descriptor(membership).password_readers if membership else (),
            encryption_types=values["encryption_types"] or 0,
            description=values["description"] or None,
            enabled=values["enabled"],
        ),
        membership=membership,
    )


def gmsa_attribute_changes(current: GmsaSettings | None, desired: GmsaSettings, current_membership: bytes | None = None) -> tuple[dict[str, Any], list[str]]:
    """LDAP attributes to replace and to clear so that ``current`` becomes ``desired`` (all of them on creation).

    ``current_membership`` is the descriptor in AD: a new one keeps its deny, object and other ACEs.

    ``enabled`` is left out: each transport has its own way to write it (userAccountControl, -Enabled).
    AD compares host names and SPNs case-insensitively, so a change of case alone is no change.
    """
    values = {
        "dNSHostName": (desired.dns_host_name, current and current.dns_host_name, str.lower),
        "servicePrincipalName": (list(desired.spns), current and list(current.spns), lambda spns: {spn.lower() for spn in spns}),
        "msDS-GroupMSAMembership": (desired.password_readers, current and current.password_readers, set),
        "msDS-SupportedEncryptionTypes": (desired.encryption_types, current and current.encryption_types, None),
        "description": (desired.description, current and current.description, None),
    }
    replace: dict[str, Any] = {}
    clear: list[str] = []
    for attribute, (new, old, normalize) in values.items():
        if current is not None and (normalize(new) if normalize else new) == (normalize(old) if normalize else old):
            continue
        if attribute == "msDS-GroupMSAMembership":
            replace[attribute] = rewrite_password_readers(current_membership, new) if current_membership else encode_group_msa_membership(new)
        elif new in (None, "", []):
            if current is not None:
                clear.append(attribute)
        else:
            replace[attribute] = new
    return replace, clear


def apply_list_changes(current: list[str], changes: dict | None, key=str.lower) -> list[str]:
    """Apply an ``{add, remove, set}`` option (the shape microsoft.ad uses) to ``current``.

    ``set`` replaces the list, then ``add`` appends what is missing and ``remove`` drops entries; entries are
    compared through ``key`` (case-insensitive by default) and keep their first spelling.
    """
    if not changes:
        return list(current)
    result: dict[str, str] = {}
    for value in [*(current if changes.get("set") is None else changes["set"]), *(changes.get("add") or ())]:
        result.setdefault(key(value), value)
    for value in changes.get("remove") or ():
        result.pop(key(value), None)
    return list(result.values())


def list_option_values(changes: dict | None) -> list[tuple[str, str]]:
    """Every ``(field, value)`` of an ``{add, remove, set}`` option, the field as ``add[0]``, to validate or resolve."""
    return [
        (f"{suboption}[{index}]", value)
        for suboption in ("set", "add", "remove")
        for index, value in enumerate((changes or {}).get(suboption) or ())
    ]


def list_option_spec(**element_options: Any) -> dict:
    """Argument spec of an ``{add, remove, set}`` option whose lists hold strings."""
    elements = dict(type="list", elements="str", **element_options)
    return dict(type="dict", options=dict(add=elements, remove=elements, set=elements))


def container_or_default(path: str | None, facts: DomainFacts, default_rdn: str) -> str:
    """The container DN for a new object: ``path`` when given, else ``default_rdn`` under the domain."""
    return path or f"{default_rdn},{facts.distinguished_name}"


def check_container(client: DomainClient, container: str, field: str) -> str:
    """Return ``container`` if it exists, else raise a ValidationError naming ``field`` (before any change)."""
    if not client.container_exists(container):
        raise ValidationError(field, f"the container {container!r} does not exist in the domain")
    return container


def encryption_type_names(value: int) -> list[str]:
    return [name for name, bit in ENCRYPTION_TYPES.items() if value & bit]


def settings_facts(settings: GmsaSettings) -> dict[str, Any]:
    """A gMSA's settings as the modules return them (option names of gmsa_account)."""
    return dict(
        dns_hostname=settings.dns_host_name,
        spns=list(settings.spns),
        allowed_to_retrieve_password=list(settings.password_readers),
        kerberos_encryption_types=encryption_type_names(settings.encryption_types),
        description=settings.description,
        enabled=settings.enabled,
    )


def encryption_types_value(names: list[str] | tuple[str, ...]) -> int:
    value = 0
    for name in names:
        value |= ENCRYPTION_TYPES[name]
    return value


# --- connection options, documented in doc_fragments/domain_connection.py ---------------------------------

def _non_empty_env_fallback(*names: str) -> str:
    """Like Ansible's env_fallback, but an empty variable counts as not set.

    AWX injects every field of a credential type, empty when the user left it blank; an empty
    GMSA_DOMAIN_PORT must fall through to the default, not fail as "not an int".
    """
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    raise AnsibleFallbackNotFound


def _option(type_: str, env: str, **extra: Any) -> dict:
    return dict(type=type_, fallback=(_non_empty_env_fallback, [env]), **extra)


DOMAIN_CONNECTION_ARGUMENT_SPEC = dict(
    domain_transport=_option("str", "GMSA_DOMAIN_TRANSPORT", choices=["winrm", "ldap"], default="winrm"),
    domain_server=_option("str", "GMSA_DOMAIN_SERVER", required=True),
    domain_port=_option("int", "GMSA_DOMAIN_PORT"),
    domain_username=_option("str", "GMSA_DOMAIN_USERNAME"),
    domain_password=_option("str", "GMSA_DOMAIN_PASSWORD", no_log=True),
    domain_auth=_option("str", "GMSA_DOMAIN_AUTH", choices=["ntlm", "kerberos", "credssp", "basic"], default="ntlm"),
    domain_tls=_option("str", "GMSA_DOMAIN_TLS", choices=["none", "tls", "starttls"], default="none"),
    domain_validate_certs=_option("bool", "GMSA_DOMAIN_VALIDATE_CERTS", default=True),
    domain_ca_cert=_option("path", "GMSA_DOMAIN_CA_CERT"),
    domain_krb5_config=_option("path", "KRB5_CONFIG"),
    domain_kerberos_hostname=_option("str", "GMSA_DOMAIN_KERBEROS_HOSTNAME"),
    domain_kerberos_delegation=_option("bool", "GMSA_DOMAIN_KERBEROS_DELEGATION", default=False),
    domain_proxy=_option("str", "GMSA_DOMAIN_PROXY"),
    domain_timeout=_option("int", "GMSA_DOMAIN_TIMEOUT", default=600),
)


def domain_argument_spec(**module_options: dict) -> dict:
    """The module's argument spec: its own options plus the connection options."""
    return dict(module_options, **DOMAIN_CONNECTION_ARGUMENT_SPEC)


@dataclass(frozen=True)
class ConnectionSettings:
    transport: str
    server: str
    port: int
    username: str | None
    password: str | None
    auth: str
    tls: str
    validate_certs: bool
    ca_cert: str | None
    timeout: int
    kerberos_hostname: str | None = None
    kerberos_delegation: bool = False
    proxy: str | None = None

    @property
    def warnings(self) -> list[str]:
        """What is allowed but weak; the modules show each as a warning. Kerberos over TLS is the recommended setting."""
        found = []
        if self.auth == "ntlm" and self.tls == "none":
            found.append(
                "domain_auth ntlm without domain_tls: NTLM protects the traffic with RC4-based sealing and does not"
                " authenticate the server; use kerberos with domain_tls tls"
            )
        if self.tls != "none" and not self.validate_certs:
            found.append("domain_validate_certs is false: anyone on the path can impersonate the server and read the credentials")
        if self.auth == "basic":
            found.append("domain_auth basic sends the password itself to the server; use kerberos (or ntlm) with domain_tls tls")
        return found

    @classmethod
    def from_params(cls, params: dict) -> ConnectionSettings:
        """Check the combination of connection options; raise :class:`DomainError` naming the option."""
        transport, auth, tls = params["domain_transport"], params["domain_auth"], params["domain_tls"]
        if tls == "starttls" and transport != "ldap":
            raise DomainError("domain_tls: starttls exists for LDAP only; use tls (HTTPS) with the winrm transport")
        if auth == "credssp" and transport != "winrm":
            raise DomainError("domain_auth: credssp is a WinRM authentication; the ldap transport takes ntlm, kerberos or basic")
        if auth == "basic" and transport == "winrm":
            # The WinRM service checks Basic credentials against local accounts only, and a DC has none
            # (https://learn.microsoft.com/en-us/windows/win32/winrm/authentication-for-remote-connections).
            raise DomainError(
                "domain_auth: basic authenticates only local accounts of the WinRM host, which a DC has none of;"
                " use kerberos (recommended), ntlm or credssp with the winrm transport"
            )
        if auth == "basic" and tls == "none":
            raise DomainError("domain_auth: basic sends the password in clear text; it is accepted only with domain_tls tls or starttls")
        if auth != "kerberos" and not (params["domain_username"] and params["domain_password"]):
            raise DomainError(f"domain_username and domain_password are required with domain_auth {auth}")
        if params["domain_timeout"] <= 0:
            raise DomainError("domain_timeout: must be a positive number of seconds")
        for option in ("domain_kerberos_hostname", "domain_kerberos_delegation", "domain_proxy"):
            if params[option] and transport != "winrm":
                raise DomainError(f"{option}: applies to the winrm transport only")
        if params["domain_kerberos_delegation"] and auth != "kerberos":
            raise DomainError("domain_kerberos_delegation: needs domain_auth kerberos (credssp delegates by itself)")
        port = params["domain_port"] or _TRANSPORT_DEFAULT_PORTS[(transport, tls == "tls")]
        return cls(
            transport=transport,
            server=params["domain_server"],
            port=port,
            username=params["domain_username"],
            password=params["domain_password"],
            auth=auth,
            tls=tls,
            validate_certs=params["domain_validate_certs"],
            ca_cert=params["domain_ca_cert"],
            timeout=params["domain_timeout"],
            kerberos_hostname=params["domain_kerberos_hostname"],
            kerberos_delegation=params["domain_kerberos_delegation"],
            proxy=params["domain_proxy"],
        )


def open_domain_client(params: dict, warn=None) -> DomainClient:
    """Connect with the module's connection options; ``warn`` (e.g. ``module.warn``) gets each weak setting. Raises :class:`DomainError`."""
    settings = ConnectionSettings.from_params(params)
    for warning in settings.warnings if warn else ():
        warn(warning)
    if params["domain_krb5_config"]:
        # The Kerberos libraries (pyspnego, kinit) read their configuration from the environment only.
        os.environ["KRB5_CONFIG"] = params["domain_krb5_config"]
    deadline = time.monotonic() + settings.timeout
    # Imported here: each transport imports this module for the base class.
    if settings.transport == "winrm":
        from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._winrm_transport import WinRMDomainClient

        return WinRMDomainClient(settings, deadline)
    from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap_transport import LdapDomainClient

    return LdapDomainClient(settings, deadline)
