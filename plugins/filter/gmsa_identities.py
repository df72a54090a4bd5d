# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters that turn the account model and the identity scope into the portable identities and their reach.

With scope ``shared`` one identity may retrieve every gMSA's password and its Secret goes into every workload
namespace. With scope ``namespace`` each workload namespace gets an identity of its own, allowed to retrieve only the
passwords of the gMSAs whose credspecs are bound there, and its Secret lives only in that namespace: a pod in one
namespace that mounts the Secret can no longer read another namespace's gMSA password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    USER_NAME_MAX_LENGTH,
    ValidationError,
    validate_k8s_label,
    validate_user_name,
)

SCOPES = ("namespace", "shared")
# A namespace too long for the name is replaced by (the start of it and) a digest of it, which must fit.
DIGEST_LENGTH = 6
PREFIX_MAX_LENGTH = USER_NAME_MAX_LENGTH - 1 - DIGEST_LENGTH
# Always present, so every derived password meets AD's complexity rule (upper, lower, digit, symbol).
PASSWORD_PREFIX = "Gm1-"


def namespace_identity_name(prefix: str, namespace: str) -> str:
    """``PREFIX-NAMESPACE``; a namespace too long for 20 characters is cut and ends in a digest, so names stay unique."""
    room = USER_NAME_MAX_LENGTH - len(prefix) - 1
    if len(namespace) > room:
        digest = hashlib.sha256(namespace.encode()).hexdigest()[:DIGEST_LENGTH]
        head = namespace[: max(0, room - DIGEST_LENGTH - 1)].rstrip("-")
        namespace = f"{head}-{digest}" if head else digest
    return f"{prefix}-{namespace}"


def namespace_identity_password(secret: str, name: str) -> str:
    """A password per identity, derived from the one secret: knowing one namespace's password reveals no other's."""
    digest = hmac.new(secret.encode(), f"wincontainers.gmsa identity {name}".encode(), hashlib.sha256).digest()
    return PASSWORD_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _fail(message: str):
    raise AnsibleFilterError(f"gmsa_identities: {message}")


def _namespace_of(index: int, account: Mapping[str, Any]) -> str | None:
    """The one namespace an account is bound in; with scope namespace a credspec serves one namespace's identity.

    None when it names none: the roles' argument specs then say which key is missing, as they do for any scope.
    """
    bindings = [binding for binding in account.get("service_accounts") or [] if isinstance(binding, Mapping)]
    namespaces = sorted({binding["namespace"] for binding in bindings if isinstance(binding.get("namespace"), str)})
    if not namespaces:
        return None
    if len(namespaces) != 1:
        _fail(
            f"gmsa_accounts[{index}] ({account['name']}).service_accounts: with gmsa_identity_scope namespace an account is "
            f"bound in exactly one namespace, whose identity alone may retrieve its password; got {len(namespaces)} "
            f"({', '.join(map(str, namespaces))}). Use one gMSA per namespace, or gmsa_identity_scope shared"
        )
    try:
        namespace = validate_k8s_label(namespaces[0], f"gmsa_accounts[{index}].service_accounts.namespace")
    except ValidationError as error:
        _fail(str(error))
    secret_namespaces = (account.get("identity_secret") or {}).get("namespaces")
    if secret_namespaces and list(secret_namespaces) != [namespace]:
        _fail(
            f"gmsa_accounts[{index}] ({account['name']}).identity_secret.namespaces: with gmsa_identity_scope namespace the "
            f"identity Secret stays in the account's namespace {namespace}; got {', '.join(map(str, secret_namespaces))}"
        )
    return namespace


def gmsa_identities(accounts: Sequence[Mapping[str, Any]], username: str, password: str, scope: str = "namespace") -> list[dict[str, Any]]:
    """The portable identities of ``gmsa_accounts``: ``[{name, password, namespace, accounts}]``.

    ``shared``: one identity, ``username``, for every account (``namespace`` is None). ``namespace``: one per workload
    namespace, ``USERNAME-NAMESPACE``, with a password derived from ``password``, for the accounts bound there.
    """
    if scope not in SCOPES:
        _fail(f"gmsa_identity_scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not isinstance(accounts, Sequence) or isinstance(accounts, (str, bytes)):
        _fail(f"_input must be the list of accounts (gmsa_accounts), got {type(accounts).__name__}")
    try:
        validate_user_name(username, "gmsa_identity_username")
    except ValidationError as error:
        _fail(str(error))
    names = [account.get("name") for account in accounts if isinstance(account, Mapping)]
    if scope == "shared":
        return [{"name": username, "password": password, "namespace": None, "accounts": names}]
    if len(username) > PREFIX_MAX_LENGTH:
        _fail(
            f"gmsa_identity_username: with gmsa_identity_scope namespace it is the prefix of one identity per namespace "
            f"(PREFIX-NAMESPACE, a sAMAccountName of at most {USER_NAME_MAX_LENGTH} characters), so at most "
            f"{PREFIX_MAX_LENGTH} characters; got {len(username)}"
        )
    by_namespace: dict[str, list[str]] = {}
    for index, account in enumerate(accounts):
        namespace = _namespace_of(index, account)
        if namespace:
            by_namespace.setdefault(namespace, []).append(account["name"])
    identities = []
    for namespace, account_names in sorted(by_namespace.items()):
        name = namespace_identity_name(username, namespace)
        identities.append({"name": name, "password": namespace_identity_password(password, name), "namespace": namespace, "accounts": account_names})
    return identities


def gmsa_identity_credspecs(credspecs: Sequence[Mapping[str, Any]], identities: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Entries of ``gmsa_credspec``'s ``credspecs`` with, under scope namespace, their namespace's identity and Secret place.

    A shared identity is left to the module-level ``identity`` option, so the entries stay as they were.
    """
    scoped = {account: identity for identity in identities if identity["namespace"] for account in identity["accounts"]}
    entries = []
    for credspec in credspecs:
        entry = dict(credspec)
        identity = scoped.get(entry["account_name"])
        if identity:
            entry["identity"] = {"username": identity["name"], "password": identity["password"]}
            entry["identity_secret"] = dict(entry.get("identity_secret") or {}, namespaces=[identity["namespace"]])
        entries.append(entry)
    return entries


class FilterModule:
    """Filters over the identity scopes."""

    def filters(self):
        return {
            "gmsa_identities": gmsa_identities,
            "gmsa_identity_credspecs": gmsa_identity_credspecs,
        }
