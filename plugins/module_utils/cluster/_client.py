# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Thin Kubernetes client for the cluster modules.

Connection options are kubernetes.core's (its options, ``K8S_AUTH_*`` environment, kubeconfig and context), carried
out by one of the transports of :mod:`._connection`; this layer adds what the modules need:

- a static table of the few kinds the collection writes, so no run pays for API discovery and check mode can
  name a kind whose CRD is not installed yet;
- requests by path (get, list, server-side apply, delete, create) that return plain dicts, safe to send from
  several threads at once;
- lists read in pages, and requests the server turns away for load (429, or a 5xx with Retry-After: API
  priority and fairness) sent again after the time it asks for, as client-go does;
- one error type whose message says what failed in words a cluster admin acts on (unreachable API server,
  forbidden by RBAC, missing CRD), never the raw response with its headers.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._connection import (
    HttpTransport,
    KubernetesTransport,
    StatusError,
    TransportError,
    direct_endpoint,
)

FIELD_MANAGER = "wincontainers.gmsa"
# Every object the collection creates carries this label; state=absent deletes nothing without it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "wincontainers.gmsa"
REQUEST_TIMEOUT = 30
# client-go sends a request again when the answer is 429 or a 5xx with a Retry-After header (throttling by API
# priority and fairness, k8s.io/apiserver pkg/server/filters/priority-and-fairness.go tooManyRequests), after the
# seconds that header gives, at most 10 times (k8s.io/client-go rest/with_retry.go checkWait, rest/request.go
# maxRetries). A refused request was not carried out, so sending a write again is safe.
MAX_RETRIES = 10
# Items per page of a list (limit and continue; kubectl's --chunk-size default): neither the server nor this
# process holds one answer with every object of a large kind.
PAGE_SIZE = 500
# A list of PartialObjectMetadata: each item's metadata only, as kubectl get --output name asks for it
# (k8s.io/apimachinery pkg/apis/meta/v1 PartialObjectMetadataList; k8s.io/apiserver pkg/endpoints/handlers/response.go).
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


@dataclass(frozen=True)
class Kind:
    """Where the API serves one kind of object."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group_version_path(self) -> str:
        return "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        parts = [self.group_version_path]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(parts)


KINDS = {
    kind.kind: kind
    for kind in (
        Kind("v1", "Namespace", "namespaces", False),
        Kind("v1", "Node", "nodes", False),
        Kind("v1", "ServiceAccount", "serviceaccounts", True),
        Kind("v1", "Secret", "secrets", True),
        Kind("v1", "Service", "services", True),
        Kind("v1", "Pod", "pods", True),
        Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
        Kind("apps/v1", "Deployment", "deployments", True),
        Kind("apps/v1", "StatefulSet", "statefulsets", True),
        Kind("apps/v1", "DaemonSet", "daemonsets", True),
        Kind("apps/v1", "ReplicaSet", "replicasets", True),
        Kind("batch/v1", "Job", "jobs", True),
        Kind("batch/v1", "CronJob", "cronjobs", True),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
        Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
        Kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
        Kind("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", False),
        Kind("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", False),
        Kind("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", False),
        Kind("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", False),
        Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False),
        Kind("windows.k8s.io/v1", "GMSACredentialSpec", "gmsacredentialspecs", False),
        Kind("cert-manager.io/v1", "Issuer", "issuers", True),
        Kind("cert-manager.io/v1", "Certificate", "certificates", True),
    )
}


def object_ref(obj: dict[str, Any]) -> str:
    """``Kind namespace/name`` or ``Kind name``, as messages and results name objects."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{obj['kind']} {namespace + '/' if namespace else ''}{metadata['name']}"


class ApiError(Exception):
    """A request failed; ``str()`` explains it, ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


# The cause the NamespaceLifecycle admission plugin adds to its 403 for a namespace being deleted
# (k8s.io/apiserver pkg/admission/plugin/namespace/lifecycle/admission.go): not an RBAC refusal.
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
# A webhook's or an admission policy's refusal is a 403 too (webhooks such as windows-gmsa answer http.StatusForbidden),
# worded by k8s.io/apiserver: pkg/admission/plugin/webhook/errors/statuserror.go ToStatusErr ('admission webhook %q
# denied the request: ...') and pkg/admission/plugin/policy/validating/dispatcher.go ('... denied request: ...').
_ADMISSION_DENIAL = re.compile(r"admission webhook \"[^\"]*\" denied the request|ValidatingAdmissionPolicy '[^']*'( with binding '[^']*')? denied request")


def _server_message(error: StatusError) -> tuple[str, str, list[str]]:
    """The server's message, its reason, and the types of the causes it gives."""
    try:
        body = json.loads(error.body)
    except (TypeError, ValueError):
        return (error.reason or "").strip(), "", []
    # A StatusCause's type travels under the JSON key "reason" (metav1.StatusCause).
    causes = [cause.get("reason", "") for cause in (body.get("details") or {}).get("causes") or []]
    return body.get("message", error.reason or ""), body.get("reason", ""), causes


def _retry_after(error: StatusError) -> int | None:
    """Seconds the server asks to wait before sending the request again, or None when it is not to be sent again."""
    if error.status != 429 and error.status < 500:
        return None
    try:
        # Whole seconds, as kube-apiserver writes it and client-go reads it (rest/with_retry.go retryAfterSeconds).
        seconds = int((error.headers or {}).get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(seconds, 0), REQUEST_TIMEOUT)


class Cluster:
    """Requests against one API server, with kubernetes.core's connection options."""

    def __init__(self, module: AnsibleK8SModule) -> None:
        endpoint = direct_endpoint(module.params)
        try:
            self._transport = HttpTransport(endpoint) if endpoint else KubernetesTransport(module, REQUEST_TIMEOUT)
        except TransportError as error:
            raise ApiError(str(error)) from None
        except OSError as error:  # the CA or client certificate files cannot be read or do not hold what they should
            raise ApiError(f"cannot configure the Kubernetes client for {endpoint.host}: {error}") from None
        self.host = self._transport.host
        # Requests this client sends at once at most; more threads would each open a new connection.
        self.connection_pool_size = self._transport.pool_size

    def _request(
        self, method: str, path: str, action: str, query: dict[str, Any] | None = None, body: Any = None, headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The answer to one request, sent again while the server asks for that; ``query`` entries that are None are left out."""
        parameters = [(name, value) for name, value in (query or {}).items() if value is not None]
        retries = 0
        while True:
            try:
                return json.loads(self._transport.send(method, path, parameters, dict(headers or {}), body, REQUEST_TIMEOUT))
            except StatusError as error:
                wait = _retry_after(error)
                if wait is None or retries == MAX_RETRIES:
                    raise self._api_error(error, action, retries) from None
                retries += 1
                time.sleep(wait)
            except TransportError as error:
                raise ApiError(f"{action}: cannot reach the Kubernetes API server at {self.host}: {error}") from None

    @staticmethod
    def _api_error(error: StatusError, action: str, retries: int) -> ApiError:
        message, reason, causes = _server_message(error)
        if error.status == 403 and NAMESPACE_TERMINATING_CAUSE in causes:
            message = f"refused because the namespace is being deleted (wait until it is gone, then retry): {message}"
        elif error.status == 403 and _ADMISSION_DENIAL.search(message):
            message = f"refused by admission: {message}"
        elif error.status == 403:
            message = f"forbidden by RBAC: {message}"
        if retries:
            message = f"{message} (still so after {retries} retries at the times the server asked for)"
        return ApiError(f"{action}: {message}", error.status, reason)

    def serves(self, kind: str) -> bool:
        """Whether the API server serves ``kind`` at the version of :data:`KINDS`, by discovery of its group version."""
        entry = KINDS[kind]
        try:
            resources = self._request("get", entry.group_version_path, f"discovering {entry.api_version}").get("resources", [])
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return any(resource.get("name") == entry.plural for resource in resources)

    def namespaced_kinds(self) -> tuple[list[Kind], list[str]]:
        """Every namespaced kind the API server can list, at its group's preferred version, by API discovery.

        Also returns the group versions whose discovery failed (an aggregated API that is down answers 503): what
        their kinds hold in a namespace is unknown.
        """
        group_versions = ["v1"] + [
            group["preferredVersion"]["groupVersion"]
            for group in self._request("get", "/apis", "discovering the API groups").get("groups") or []
            if group.get("preferredVersion")
        ]
        kinds, failed = [], []
        for group_version in group_versions:
            path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            try:
                resources = self._request("get", path, f"discovering {group_version}").get("resources") or []
            except ApiError as error:
                failed.append(f"{group_version} ({error})")
                continue
            kinds.extend(
                Kind(group_version, resource["kind"], resource["name"], True)
                for resource in resources
                # A name with a slash is a subresource (pods/log), not a kind of object.
                if resource.get("namespaced") and "/" not in resource["name"] and "list" in (resource.get("verbs") or [])
            )
        return kinds, failed

    def server_version(self) -> tuple[int, int]:
        """The API server's (major, minor) version, from /version (a minor such as "30+" counts as 30)."""
        version = self._request("get", "/version", "reading the API server's version")
        return int(version.get("major") or 0), int(re.match(r"\d*", version.get("minor") or "").group() or 0)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist (a kind the API does not serve counts as not existing)."""
        try:
            return self._request("get", KINDS[kind].path(namespace, name), f"reading {kind} {name}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, kind: str | Kind, namespace: str | None = None, label_selector: str | None = None, field_selector: str | None = None,
        metadata_only: bool = False,
    ) -> list[dict[str, Any]]:
        """The objects of a kind (in all namespaces when ``namespace`` is None); empty when the kind is not served.

        ``kind`` is a name in :data:`KINDS` or a discovered :class:`Kind`. ``metadata_only`` reads only each
        object's metadata (a Secret's data stays on the server).
        """
        entry = kind if isinstance(kind, Kind) else KINDS[kind]
        headers = {"Accept": METADATA_ONLY} if metadata_only else {}
        items: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            try:
                answer = self._request(
                    "get", entry.path(namespace), f"listing {entry.plural}",
                    {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": PAGE_SIZE, "continue": page}, headers=headers,
                )
            except ApiError as error:
                if error.status == 404:
                    return []
                raise
            # List items carry neither apiVersion nor kind; the rest of the collection expects both. An empty
            # PartialObjectMetadataList has "items": null (a nil slice, k8s.io/apimachinery meta/v1 types.go).
            items.extend(dict(item, apiVersion=entry.api_version, kind=entry.kind) for item in answer.get("items") or [])
            page = (answer.get("metadata") or {}).get("continue")
            if not page:
                return items

    def apply(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply with the collection's field manager; conflicts with other managers are taken over."""
        metadata = obj["metadata"]
        return self._request(
            "patch",
            KINDS[obj["kind"]].path(metadata.get("namespace"), metadata["name"]),
            f"applying {object_ref(obj)}",
            {"fieldManager": FIELD_MANAGER, "force": "true", "dryRun": "All" if dry_run else None},
            body=obj,
            # JSON is YAML: the apply patch is sent as JSON under the apply content type.
            headers={"Content-Type": "application/apply-patch+yaml"},
        )

    def replace(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Replace (PUT) an object as a whole: fields absent from ``obj`` are removed, its identity (uid) stays."""
        metadata = obj["metadata"]
        return self._request(
            "put",
            KINDS[obj["kind"]].path(metadata.get("namespace"), metadata["name"]),
            f"replacing {object_ref(obj)}",
            {"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None},
            body=obj,
        )

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        metadata = obj["metadata"]
        return self._request(
            "post",
            KINDS[obj["kind"]].path(metadata.get("namespace")),
            f"creating {object_ref(obj)}",
            {"fieldManager": FIELD_MANAGER, "dryRun": "All" if dry_run else None},
            body=obj,
        )

    def delete(self, obj: dict[str, Any], dry_run: bool = False) -> bool:
        """Delete an object (dependents in the background); False when it was already gone."""
        metadata = obj["metadata"]
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if dry_run:
            # In the body, not the query: the API server takes a DELETE's options from its body when there is
            # one, so a dryRun query parameter next to it would be ignored and the object really deleted.
            options["dryRun"] = ["All"]
        try:
            self._request("delete", KINDS[obj["kind"]].path(metadata.get("namespace"), metadata["name"]), f"deleting {object_ref(obj)}", body=options)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True


def cluster_module(argument_spec: dict[str, Any], **kwargs: Any) -> AnsibleK8SModule:
    """An AnsibleK8SModule taking kubernetes.core's connection options next to ``argument_spec``.

    It does not import the ``kubernetes`` client to check its version: only KubernetesTransport needs it, and checks.
    """
    return AnsibleK8SModule(argument_spec=dict(AUTH_ARG_SPEC, **argument_spec), supports_check_mode=True, check_k8s=False, check_pyyaml=False, **kwargs)
