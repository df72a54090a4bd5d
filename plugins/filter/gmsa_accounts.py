# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that split the playbooks' account model into the options of the domain and cluster modules.

One entry of ``gmsa_accounts`` (docs/variables.md) describes an application's gMSA on both sides: its Active
Directory settings (the ``accounts`` option of ``gmsa_account``) and its cluster settings (the ``credspecs``
option of ``gmsa_credspec``). The playbooks hand each role its half with these filters, so the split lives in
one place and a misspelt key fails with its name instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    credspec_name_from_account,
    validate_k8s_subdomain,
)

# Keys of an account entry that are options of gmsa_account's accounts, unchanged.
AD_KEYS = (
    "name",
    "dns_hostname",
    "spn",
    "allowed_to_retrieve_password",
    "kerberos_encryption_types",
    "password_interval_days",
    "recreate",
    "path",
    "description",
    "enabled",
)
# Keys of an account entry that are options of gmsa_credspec's credspecs, by their name there.
CLUSTER_KEYS = {
    "credspec_name": "name",
    "service_accounts": "service_accounts",
    "cluster_role_name": "cluster_role_name",
    "identity_secret": "identity_secret",
    "host_account_config": "host_account_config",
    "additional_accounts": "additional_accounts",
    "json_path": "json_path",
}


def _entries(accounts: Any, filter_name: str) -> list[Mapping[str, Any]]:
    if not isinstance(accounts, Sequence) or isinstance(accounts, (str, bytes)):
        raise AnsibleFilterError(f"{filter_name}: _input must be the list of accounts (gmsa_accounts), got {type(accounts).__name__}")
    for index, account in enumerate(accounts):
        if not isinstance(account, Mapping):
            raise AnsibleFilterError(f"{filter_name}: gmsa_accounts[{index}] must be a dict, got {type(account).__name__}")
        if not account.get("name"):
            raise AnsibleFilterError(f"{filter_name}: gmsa_accounts[{index}].name is required (the gMSA name)")
        unknown = sorted(set(account) - set(AD_KEYS) - set(CLUSTER_KEYS))
        if unknown:
            raise AnsibleFilterError(
                f"{filter_name}: gmsa_accounts[{index}] ({account['name']}) has unknown keys {', '.join(unknown)}; "
                f"known keys: {', '.join(AD_KEYS + tuple(CLUSTER_KEYS))}"
            )
    return list(accounts)


def gmsa_account_options(accounts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Active Directory half of each account: entries of ``gmsa_account``'s ``accounts`` option."""
    return [{key: account[key] for key in AD_KEYS if key in account} for account in _entries(accounts, "gmsa_account_options")]


def gmsa_credspec_options(accounts: Sequence[Mapping[str, Any]], host_account_config: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The cluster half of each account: entries of ``gmsa_credspec``'s ``credspecs`` option.

    ``host_account_config`` (the CCG plugin of the cluster's nodes) applies to every account without its own.
    An account without service accounts is refused: no pod could use its credspec, and unlike
    ``Add-AksHciGMSACredentialSpec`` (whose ``-serviceAccount`` defaults to ``default``) nothing is bound silently.
    """
    options = []
    for index, account in enumerate(_entries(accounts, "gmsa_credspec_options")):
        if not account.get("service_accounts"):
            raise AnsibleFilterError(
                f"gmsa_credspec_options: gmsa_accounts[{index}] ({account['name']}) has no service_accounts, so no pod could use "
                "its credspec; name the service accounts allowed to use it, e.g. [{name: default, namespace: default}] for "
                "what Add-AksHciGMSACredentialSpec binds without -serviceAccount"
            )
        entry = {"account_name": account["name"]}
        entry.update({option: account[key] for key, option in CLUSTER_KEYS.items() if account.get(key) is not None})
        if "host_account_config" not in entry and host_account_config:
            entry["host_account_config"] = dict(host_account_config)
        options.append(entry)
    return options


def credspec_name(account: Mapping[str, Any] | str) -> str:
    """Name of the GMSACredentialSpec object of an account entry (or of a gMSA name), as gmsa_credspec names it."""
    try:
        if isinstance(account, Mapping):
            if account.get("credspec_name"):
                return validate_k8s_subdomain(account["credspec_name"], "credspec_name")
            return credspec_name_from_account(account.get("name"), "name")
        return credspec_name_from_account(account, "_input")
    except ValidationError as error:
        raise AnsibleFilterError(f"credspec_name: {error}") from None


class FilterModule:
    """Filters over the playbooks' account model."""

    def filters(self):
        return {
            "gmsa_account_options": gmsa_account_options,
            "gmsa_credspec_options": gmsa_credspec_options,
            "credspec_name": credspec_name,
        }
