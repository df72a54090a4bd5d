# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The namespaces and service accounts the credspecs bind to: created when missing, removed only when ours and empty.

Deleting a namespace deletes everything in it. A namespace the collection created may since hold an
application's objects, so before one is deleted every namespaced kind the API server lists is read in it, and it
is kept when anything there is not the collection's and was not made by Kubernetes itself.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import Reconciler
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ApiError,
    Cluster,
    Kind,
)

# Events are history, not content; they go with the namespace and never keep it.
_HISTORY_KINDS = frozenset({"Event"})
# What Kubernetes puts in every namespace by itself (the service account controller's default account, the root CA
# publisher's ConfigMap): not an application's.
_BUILT_IN = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
# The account a legacy token Secret belongs to (k8s.io/api core/v1 ServiceAccountNameKey).
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"
# Lists in flight at once while reading what namespaces hold.
READ_CONCURRENCY = 8


def managed_labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": managed_labels()}}


def service_account(namespace_name: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace_name, "labels": managed_labels()}}


def wanted(service_accounts: list[dict[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The namespaces and the service accounts of ``service_accounts`` (``name``, ``namespace``), each once, in order."""
    namespaces = list(dict.fromkeys(entry["namespace"] for entry in service_accounts))
    accounts = list(dict.fromkeys((entry["namespace"], entry["name"]) for entry in service_accounts))
    return [namespace(name) for name in namespaces], [service_account(*account) for account in accounts]


def read(reconciler: Reconciler, namespaces: list[dict[str, Any]]) -> None:
    """Know every namespace, and every service account of the ones that exist, from one list each."""
    reconciler.prefetch("Namespace", metadata_only=True)
    for obj in namespaces:
        if reconciler.live(obj) is not None:
            reconciler.prefetch("ServiceAccount", obj["metadata"]["name"], metadata_only=True)


def create_missing(reconciler: Reconciler, service_accounts: list[dict[str, str]]) -> None:
    """Create the namespaces, then the service accounts, of ``service_accounts`` that do not exist, with the
    collection's label; one that exists is left exactly as it is, never labelled (so never deleted by a cleanup)."""
    namespaces, accounts = wanted(service_accounts)
    read(reconciler, namespaces)
    reconciler.create_all(namespaces, accounts)


def is_foreign(kind: str, item: dict[str, Any], token_secret: bool = False) -> bool:
    """Whether an object in a namespace is an application's (pure): it keeps the namespace from being deleted.

    Not foreign: the collection's own objects, objects owned by another (they go with their owner), what
    Kubernetes makes in every namespace, and a legacy token Secret of the default service account.
    """
    metadata = item["metadata"]
    if (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY or metadata.get("ownerReferences"):
        return False
    if (kind, metadata["name"]) in _BUILT_IN:
        return False
    return not (token_secret and (metadata.get("annotations") or {}).get(SERVICE_ACCOUNT_NAME_ANNOTATION) == "default")


def _listings(kind: Kind) -> list[tuple[str | None, bool]]:
    """The (field selector, token Secrets?) lists that read a kind; Secrets by type, as metadata does not carry it."""
    if kind.kind == "Secret" and kind.api_version == "v1":
        return [(f"type!={TOKEN_SECRET_TYPE}", False), (f"type={TOKEN_SECRET_TYPE}", True)]
    return [(None, False)]


def foreign_objects(cluster: Cluster, namespaces: list[str]) -> dict[str, list[str]]:
    """For each namespace, the objects that are not the collection's (``Kind/name``), by one list per kind.

    A kind that cannot be listed, or a group whose discovery fails, counts as foreign: what it holds is unknown.
    Only metadata is read, so no Secret's data reaches this process.
    """
    if not namespaces:
        return {}
    kinds, undiscovered = cluster.namespaced_kinds()
    reads = [
        (name, kind, selector, token_secret)
        for name in namespaces
        for kind in kinds
        if kind.kind not in _HISTORY_KINDS
        for selector, token_secret in _listings(kind)
    ]

    def read(name: str, kind: Kind, selector: str | None, token_secret: bool) -> list[str]:
        try:
            items = cluster.list(kind, name, field_selector=selector, metadata_only=True)
        except ApiError as error:
            return [f"{kind.kind} (could not list them: {error})"]
        return [f"{kind.kind}/{item['metadata']['name']}" for item in items if is_foreign(kind.kind, item, token_secret)]

    found: dict[str, list[str]] = {name: [f"the kinds of {group} (its discovery failed)" for group in undiscovered] for name in namespaces}
    with ThreadPoolExecutor(max_workers=max(1, min(READ_CONCURRENCY, cluster.connection_pool_size))) as pool:
        for (name, _kind, _selector, _token), objects in zip(reads, pool.map(lambda args: read(*args), reads)):
            found[name].extend(objects)
    return found
