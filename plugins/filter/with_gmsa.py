# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ``with_gmsa`` filter: wire a workload's pod template for a gMSA credential spec."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    validate_dns_name,
    validate_k8s_subdomain,
)

WINDOWS_NODE_SELECTOR = {"kubernetes.io/os": "windows"}
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
IDENTITY_SECRET_VOLUME = "gmsa-identity"
IDENTITY_SECRET_MOUNT_KEYS = ("secret_name", "mount_path")

# Where each workload kind keeps its pod spec.
_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the pod spec inside ``manifest`` (a workload, a pod template or a bare pod spec), in place."""
    kind = manifest.get("kind")
    if kind is None:
        if "containers" in manifest:
            return manifest
        if isinstance(manifest.get("spec"), Mapping) and "containers" in manifest["spec"]:
            return manifest["spec"]
        raise ValidationError("_input", "is neither a workload with a kind, a pod template nor a pod spec with containers")
    if kind not in _POD_SPEC_PATHS:
        raise ValidationError("_input", f"kind {kind!r} has no pod template; supported kinds: {', '.join(_POD_SPEC_PATHS)}")
    node = manifest
    for key in _POD_SPEC_PATHS[kind]:
        node = node.get(key)
        if not isinstance(node, dict):
            raise ValidationError("_input", f"{kind} has no {'.'.join(_POD_SPEC_PATHS[kind])}")
    return node


def _windows_options(holder: dict[str, Any]) -> dict[str, Any]:
    return holder.setdefault("securityContext", {}).setdefault("windowsOptions", {})


def _set_credspec(pod_spec: dict[str, Any], credspec: str, containers: Sequence[str] | None) -> None:
    if not containers:
        _windows_options(pod_spec)["gmsaCredentialSpecName"] = credspec
        return
    by_name = {container.get("name"): container for container in pod_spec.get("containers", [])}
    unknown = [name for name in containers if name not in by_name]
    if unknown:
        raise ValidationError("containers", f"{', '.join(unknown)} not in the pod template; its containers are {', '.join(map(str, by_name))}")
    for name in containers:
        _windows_options(by_name[name])["gmsaCredentialSpecName"] = credspec


def _set_dns(pod_spec: dict[str, Any], dns_servers: Sequence[str] | None, domain: str | None, dns_policy: str | None) -> None:
    if dns_policy is not None:
        if dns_policy not in DNS_POLICIES:
            raise ValidationError("dns_policy", f"{dns_policy!r} is not one of {', '.join(DNS_POLICIES)}")
        if dns_policy == "None" and not dns_servers:
            raise ValidationError("dns_policy", "'None' needs dns_servers: the pod would have no resolver at all")
        pod_spec["dnsPolicy"] = dns_policy
    dns_config = pod_spec.setdefault("dnsConfig", {}) if dns_servers or domain else {}
    for index, server in enumerate(dns_servers or ()):
        try:
            address = str(ipaddress.ip_address(server))
        except ValueError:
            raise ValidationError(f"dns_servers[{index}]", f"{server!r} is not an IP address; name the domain controllers by address") from None
        _append_missing(dns_config.setdefault("nameservers", []), address)
    if domain:
        _append_missing(dns_config.setdefault("searches", []), validate_dns_name(domain, "domain").lower())


def _mount_identity_secret(pod_spec: dict[str, Any], mount: Mapping[str, Any], containers: Sequence[str] | None) -> None:
    """Mount the identity Secret read-only into the gMSA containers (all of them without ``containers``)."""
    if not isinstance(mount, Mapping):
        raise ValidationError("identity_secret_mount", f"must be a dict with secret_name and mount_path, got {type(mount).__name__}")
    unknown = sorted(set(mount) - set(IDENTITY_SECRET_MOUNT_KEYS))
    if unknown:
        raise ValidationError("identity_secret_mount", f"unknown keys {', '.join(map(str, unknown))}; known keys: {', '.join(IDENTITY_SECRET_MOUNT_KEYS)}")
    secret_name = validate_k8s_subdomain(mount.get("secret_name"), "identity_secret_mount.secret_name")
    mount_path = mount.get("mount_path")
    if not isinstance(mount_path, str) or not mount_path:
        raise ValidationError("identity_secret_mount.mount_path", "is required: the directory in the container that gets the Secret's files")
    volumes = pod_spec.setdefault("volumes", [])
    if any(volume.get("name") == IDENTITY_SECRET_VOLUME for volume in volumes):
        raise ValidationError("identity_secret_mount", f"the pod template already has a volume named {IDENTITY_SECRET_VOLUME}")
    volumes.append({"name": IDENTITY_SECRET_VOLUME, "secret": {"secretName": secret_name}})
    for container in pod_spec.get("containers", []):
        if not containers or container.get("name") in containers:
            container.setdefault("volumeMounts", []).append({"name": IDENTITY_SECRET_VOLUME, "mountPath": mount_path, "readOnly": True})


def _plain_copy(value: Any) -> Any:
    """A copy of ``value`` made of new dicts and lists. Unlike ``copy.deepcopy``, it copies only the data: a
    deepcopy of ansible-core's lazy template containers (2.19+, ``_lazy_containers.py`` ``__deepcopy__``) copies their
    templating context too, which took 0.2-0.8 s per call on the site playbook's variables."""
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain_copy(item) for item in value]
    return value


def _append_missing(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def with_gmsa(
    manifest: Mapping[str, Any],
    credspec: str,
    service_account: str | None = None,
    containers: Sequence[str] | None = None,
    dns_servers: Sequence[str] | None = None,
    domain: str | None = None,
    dns_policy: str | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    node_selector: Mapping[str, str] | None = None,
    identity_secret_mount: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a copy of ``manifest`` whose pods run as the gMSA of ``credspec`` on Windows nodes."""
    if not isinstance(manifest, Mapping):
        raise AnsibleFilterError(f"with_gmsa: _input must be a dict (a workload manifest), got {type(manifest).__name__}")
    wired = _plain_copy(manifest)
    try:
        pod_spec = _pod_spec(wired)
        _set_credspec(pod_spec, validate_k8s_subdomain(credspec, "credspec"), containers)
        if service_account is not None:
            pod_spec["serviceAccountName"] = validate_k8s_subdomain(service_account, "service_account")
        pod_spec.setdefault("nodeSelector", {}).update(WINDOWS_NODE_SELECTOR if node_selector is None else node_selector)
        for toleration in tolerations or ():
            _append_missing(pod_spec.setdefault("tolerations", []), dict(toleration))
        _set_dns(pod_spec, dns_servers, domain, dns_policy)
        if identity_secret_mount:
            _mount_identity_secret(pod_spec, identity_secret_mount, containers)
    except ValidationError as error:
        raise AnsibleFilterError(f"with_gmsa: {error}") from None
    return wired


class FilterModule:
    """gMSA filters for workload manifests."""

    def filters(self):
        return {"with_gmsa": with_gmsa}
