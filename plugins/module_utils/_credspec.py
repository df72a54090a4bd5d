# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Credential specs, built as Microsoft's ``New-CredentialSpec`` writes them, and compared with AD.

The reference is ``New-CredentialSpec`` in CredentialSpec.psm1 (MicrosoftDocs/Virtualization-Documentation,
windows-server-container-tools/ServiceAccounts). It fills ``DomainJoinConfig`` from ``Get-ADDomain``
(DNSRoot, ObjectGUID, Forest, NetBIOSName, DomainSID), lists the account under both the DNS and the NetBIOS
name of its domain, adds one entry per additional account scoped to that account's domain, and, for Azure
Key Vault, a ``HostAccountConfig``. It builds unordered hashtables, so the key order of its files is not
defined; the order used here is the one of Microsoft's published samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    validate_dns_name,
    validate_domain_sid,
    validate_gmsa_name,
    validate_guid,
    validate_netbios_domain_name,
    validate_plugin_guid,
)

# CCG plugins whose CLSID is published by their vendor. PluginInput formats:
#   azure_key_vault      "ObjectId=<managed identity object id>;SecretUri=<key vault secret URI>" (New-CredentialSpec -AKV)
#   aws_secrets_manager  '{"credentialArn": "<secret or SSM parameter ARN>"}' (Amazon ECS documentation)
CCG_PLUGIN_GUIDS = MappingProxyType(
    {
        "azure_key_vault": "{CCC2A336-D7F3-4818-A213-272B7924213E}",
        "aws_secrets_manager": "{859E1386-BDB4-49E8-85C7-3070B13920E1}",
    }
)
PORTABLE_CCG_VERSION = "1"

# Where a difference is reported but case is ignored: AD compares these names case-insensitively.
# PluginInput is opaque to Windows (it may hold a URI or ARN), so it is compared exactly.
_CASE_SENSITIVE_KEYS = frozenset({"PluginInput"})
_ACCOUNTS_PATH = "ActiveDirectoryConfig.GroupManagedServiceAccounts"


def _required(values: Mapping[str, Any], key: str, field: str) -> Any:
    if values.get(key) is None:
        raise ValidationError(f"{field}.{key}", "is required")
    return values[key]


def build_credspec(
    domain: Mapping[str, str],
    account_name: str,
    additional_accounts: Iterable[Mapping[str, str]] = (),
    host_account_config: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the credential spec for ``account_name`` as a dict in Microsoft's key order.

    ``domain`` holds the facts of the gMSA's domain: ``dns_name`` (DNSRoot), ``dns_tree_name`` (forest root
    DNS name), ``netbios_name``, ``sid`` (the domain's SID, not the gMSA's) and ``guid`` (objectGUID of the
    domain head; written lower case without braces as ``ConvertTo-Json`` does).
    ``additional_accounts`` are ``{name, domain}`` mappings; ``domain`` is the DNS name of the account's
    domain and defaults to ``domain['dns_name']``. Each becomes a single ``{Name, Scope}`` entry, as with
    ``New-CredentialSpec -AdditionalAccounts``.
    ``host_account_config`` (``{plugin_guid, plugin_input}``) is for hosts that are not domain joined; see
    :data:`CCG_PLUGIN_GUIDS`.

    Account names keep their case and lose a trailing ``$``. Raises :class:`ValidationError` naming the
    offending field, e.g. ``domain.sid`` or ``additional_accounts[1].name``.
    """
    dns_name = validate_dns_name(_required(domain, "dns_name", "domain"), "domain.dns_name")
    netbios_name = validate_netbios_domain_name(_required(domain, "netbios_name", "domain"), "domain.netbios_name")
    name = validate_gmsa_name(account_name, "account_name")

    accounts = [{"Name": name, "Scope": dns_name}, {"Name": name, "Scope": netbios_name}]
    for index, account in enumerate(additional_accounts):
        field = f"additional_accounts[{index}]"
        accounts.append(
            {
                "Name": validate_gmsa_name(_required(account, "name", field), f"{field}.name"),
                "Scope": dns_name if account.get("domain") is None else validate_dns_name(account["domain"], f"{field}.domain"),
            }
        )

    active_directory_config: dict[str, Any] = {"GroupManagedServiceAccounts": accounts}
    if host_account_config is not None:
        plugin_input = _required(host_account_config, "plugin_input", "host_account_config")
        if not isinstance(plugin_input, str) or not plugin_input:
            raise ValidationError("host_account_config.plugin_input", "must be a non-empty string; the CRD and CCG take PluginInput as text")
        active_directory_config["HostAccountConfig"] = {
            "PortableCcgVersion": PORTABLE_CCG_VERSION,
            "PluginGUID": validate_plugin_guid(_required(host_account_config, "plugin_guid", "host_account_config"), "host_account_config.plugin_guid"),
            "PluginInput": plugin_input,
        }

    return {
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {
            "Sid": validate_domain_sid(_required(domain, "sid", "domain"), "domain.sid"),
            "MachineAccountName": name,
            "Guid": validate_guid(_required(domain, "guid", "domain"), "domain.guid"),
            "DnsTreeName": validate_dns_name(_required(domain, "dns_tree_name", "domain"), "domain.dns_tree_name"),
            "DnsName": dns_name,
            "NetBiosName": netbios_name,
        },
        "ActiveDirectoryConfig": active_directory_config,
    }


def parse_credspec(document: Any, field: str) -> dict[str, Any]:
    """A credential spec given as a dict or as JSON text (a New-CredentialSpec file, BOM and all)."""
    if isinstance(document, str):
        try:
            document = json.loads(document.lstrip("\ufeff"))
        except ValueError as error:
            raise ValidationError(field, f"is not JSON: {error}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("DomainJoinConfig"), Mapping):
        raise ValidationError(field, "is not a credential spec: it has no DomainJoinConfig")
    return dict(document)


def plugin_of(credspec: Mapping[str, Any], field: str) -> dict[str, str] | None:
    """The CCG plugin of a credential spec's HostAccountConfig as ``{plugin_guid, plugin_input}``, None without one."""
    config = (credspec.get("ActiveDirectoryConfig") or {}).get("HostAccountConfig")
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise ValidationError(f"{field}.ActiveDirectoryConfig.HostAccountConfig", "must be an object")
    return {"plugin_guid": config.get("PluginGUID"), "plugin_input": config.get("PluginInput")}


def adopt_credspec(
    document: Any,
    domain: Mapping[str, str],
    account_name: str,
    host_account_config: Mapping[str, str] | None = None,
    field: str = "spec",
) -> dict[str, Any]:
    """Check an existing credential spec against the domain facts and the gMSA, and return it as the collection writes it.

    ``document`` is what ``New-CredentialSpec`` wrote (a dict or its JSON text). It must describe ``account_name``
    in the domain of ``domain`` (SID, GUID, DNS, forest and NetBIOS names), listing the same accounts; its
    ``HostAccountConfig`` (the CCG plugin) is kept unless ``host_account_config`` replaces it, and its plugin GUID
    must be a CLSID, so a placeholder is refused. Raises :class:`ValidationError` naming every value that differs.
    """
    credspec = parse_credspec(document, field)
    accounts = (credspec.get("ActiveDirectoryConfig") or {}).get("GroupManagedServiceAccounts") or []
    name = validate_gmsa_name(account_name, "account_name")
    netbios_name = str(domain.get("netbios_name", "")).casefold()
    # Entries for other accounts are New-CredentialSpec's -AdditionalAccounts, scoped to their domain's DNS name.
    additional = [
        {"name": entry.get("Name"), "domain": entry.get("Scope")}
        for entry in accounts
        if isinstance(entry, Mapping) and str(entry.get("Name", "")).casefold() != name.casefold()
        and str(entry.get("Scope", "")).casefold() != netbios_name
    ]
    try:
        described = build_credspec(domain, name, additional, plugin_of(credspec, field))
    except ValidationError as error:
        raise error.within(field) from None
    differences = diff_credspec(credspec, described)
    if differences:
        raise ValidationError(
            field,
            "does not match the gMSA and its domain: "
            + "; ".join(f"{difference['path']} is {difference['actual']!r}, expected {difference['expected']!r}" for difference in differences),
        )
    return described if host_account_config is None else build_credspec(domain, name, additional, host_account_config)


def to_json(credspec: Mapping[str, Any]) -> str:
    """Serialize a credential spec as the collection writes it to files: 2-space indent, ASCII, final newline."""
    return json.dumps(credspec, indent=2) + "\n"


def diff_credspec(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[dict[str, Any]]:
    """List how ``actual`` differs from ``expected`` (typically :func:`build_credspec` over AD facts).

    Each difference is ``{"path": "DomainJoinConfig.Sid", "expected": ..., "actual": ...}``; a missing value
    is ``None``. Names, SIDs and GUIDs compare case-insensitively, as AD does; ``PluginInput`` compares
    exactly. ``GroupManagedServiceAccounts`` compares as a set of ``{Name, Scope}`` entries because their
    order varies between published samples; a missing entry is reported with ``actual`` ``None`` and an
    extra one with ``expected`` ``None``. An empty list means the two match.
    """
    differences: list[dict[str, Any]] = []
    _diff_value(actual, expected, "", differences)
    return differences


def _diff_value(actual: Any, expected: Any, path: str, differences: list[dict[str, Any]]) -> None:
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        for key in [*expected, *(key for key in actual if key not in expected)]:
            _diff_value(actual.get(key), expected.get(key), f"{path}.{key}" if path else key, differences)
    elif path == _ACCOUNTS_PATH and isinstance(actual, list) and isinstance(expected, list):
        _diff_accounts(actual, expected, differences)
    elif not _same(actual, expected, path.rpartition(".")[2] in _CASE_SENSITIVE_KEYS):
        differences.append({"path": path, "expected": expected, "actual": actual})


def _diff_accounts(actual: list[Any], expected: list[Any], differences: list[dict[str, Any]]) -> None:
    def key(entry: Any) -> Any:
        return json.dumps(_casefolded(entry), sort_keys=True)

    actual_keys = {key(entry) for entry in actual}
    expected_keys = {key(entry) for entry in expected}
    differences.extend({"path": _ACCOUNTS_PATH, "expected": entry, "actual": None} for entry in expected if key(entry) not in actual_keys)
    differences.extend({"path": _ACCOUNTS_PATH, "expected": None, "actual": entry} for entry in actual if key(entry) not in expected_keys)


def _same(actual: Any, expected: Any, case_sensitive: bool) -> bool:
    if case_sensitive:
        return actual == expected
    return _casefolded(actual) == _casefolded(expected)


def _casefolded(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list):
        return [_casefolded(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _casefolded(item) for key, item in value.items()}
    return value
