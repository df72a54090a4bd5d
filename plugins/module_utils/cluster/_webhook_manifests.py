# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Manifests of the windows-gmsa admission webhook and its CRD, as pure functions of the settings.

Sources: kubernetes-sigs/windows-gmsa ``admission-webhook/deploy`` (CRD, RBAC, webhook rules, the older
``gmsa-webhook: disabled`` opt-out label) and ``charts/gmsa`` (2 replicas, PodDisruptionBudget, QPS/BURST
30/50, namespaceSelector with the ``windows.k8s.io/disabled`` opt-out, cert-manager wiring, and on master
993de21 the opt-in ``aggregate-to-view`` role). Where this differs from upstream it says why.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import MANAGED_BY, MANAGED_BY_LABEL

DEFAULT_IMAGE = "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0"
CRD_NAME = "gmsacredentialspecs.windows.k8s.io"
CERT_MANAGER_CRD_NAME = "certificates.cert-manager.io"
WEBHOOK_NAME = "admission-webhook.windows-gmsa.sigs.k8s.io"
OPT_OUT_LABEL = "windows.k8s.io/disabled"
# What upstream's deploy script labels its namespace with and selects on (gmsa-webhook.yml.tpl); namespaces
# opted out that way stay opted out.
LEGACY_OPT_OUT_LABEL = "gmsa-webhook"
LEGACY_OPT_OUT_VALUE = "disabled"
# SHA-256 of the served certificate on the pod template: a renewal changes it and so rolls the pods, which
# read their certificate at start (upstream's --cert-reload misses every renewal after the first, issue 176).
CERTIFICATE_ANNOTATION = "wincontainers.gmsa/serving-certificate-sha256"
VIEW_AGGREGATION_LABEL = "rbac.authorization.k8s.io/aggregate-to-view"
INSTALL_NAMESPACE_LABEL = "wincontainers.gmsa/webhook-namespace"
# The service listens on 443 as the API server expects; the container on an unprivileged port so it can
# run as non-root without NET_BIND_SERVICE.
SERVICE_PORT = 443
CONTAINER_PORT = 8443
TLS_MOUNT = "/tls"
NON_ROOT_UID = 65532
DEFAULT_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}

_CREDSPEC_SCHEMA = {
    "type": "object",
    "properties": {
        "credspec": {
            "description": "GMSA Credential Spec",
            "type": "object",
            "properties": {
                "ActiveDirectoryConfig": {
                    "type": "object",
                    "properties": {
                        "GroupManagedServiceAccounts": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"Name": {"type": "string"}, "Scope": {"type": "string"}}},
                        },
                        "HostAccountConfig": {
                            "type": "object",
                            "properties": {
                                "PortableCcgVersion": {"type": "string"},
                                "PluginGUID": {"type": "string"},
                                "PluginInput": {"type": "string"},
                            },
                        },
                    },
                },
                "CmsPlugins": {"type": "array", "items": {"type": "string"}},
                "DomainJoinConfig": {
                    "type": "object",
                    "properties": {
                        "DnsName": {"type": "string"},
                        "DnsTreeName": {"type": "string"},
                        "Guid": {"type": "string"},
                        "MachineAccountName": {"type": "string"},
                        "NetBiosName": {"type": "string"},
                        "Sid": {"type": "string"},
                    },
                },
            },
        }
    },
}


@dataclass(frozen=True)
class WebhookSettings:
    """What the gmsa_webhook module's options say about the install."""

    name: str = "gmsa-webhook"
    namespace: str = "gmsa-webhook"
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    replicas: int = 2
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    resources: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    log_level: str = "info"
    random_hostname: bool = False
    failure_policy: str = "Fail"
    timeout_seconds: int = 10
    excluded_namespaces: tuple[str, ...] = ("kube-system",)
    cert_manager: bool = False
    # A Secret the user provides (tls.mode=provided) instead of the collection's <name>-tls.
    provided_secret: str | None = None
    # The chart's defaults; the binary's own (client-go's 5/10) throttle bursts of pod creation.
    qps: float = 30.0
    burst: int = 50
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    view_aggregation: bool = False
    # cert-manager Certificate settings (tls.mode=cert_manager), as Go durations.
    certificate_duration: str = "8760h"
    certificate_renew_before: str = "720h"
    ca_duration: str = "87600h"
    private_key_rotation_policy: str = "Always"
    # Seconds a stopping pod keeps serving (a preStop sleep) while its endpoint leaves the API server's view;
    # 0 where the cluster lacks the sleep action (before Kubernetes 1.30).
    pre_stop_seconds: int = 0

    @property
    def tls_secret(self) -> str:
        return self.provided_secret or f"{self.name}-tls"

    @property
    def ca_secret(self) -> str:
        return f"{self.name}-ca"


def labels(settings: WebhookSettings) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/name": "gmsa-webhook", "app.kubernetes.io/instance": settings.name}


def _selector(settings: WebhookSettings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "gmsa-webhook", "app.kubernetes.io/instance": settings.name}


def _meta(settings: WebhookSettings, name: str, namespaced: bool = True) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels(settings)}
    if namespaced:
        metadata["namespace"] = settings.namespace
    else:
        # Cluster-scoped names are shared by installs in different namespaces; this tells them apart.
        metadata["labels"][INSTALL_NAMESPACE_LABEL] = settings.namespace
    return metadata


def crd() -> dict[str, Any]:
    """The GMSACredentialSpec CRD: v1 served and stored, v1alpha1 served and deprecated, one schema."""
    version = {"served": True, "schema": {"openAPIV3Schema": _CREDSPEC_SCHEMA}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            # *.k8s.io groups must point at their KEP; upstream's manifest carries the same annotation.
            "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/tree/master/keps/sig-windows/689-windows-gmsa"},
        },
        "spec": {
            "group": "windows.k8s.io",
            "names": {"kind": "GMSACredentialSpec", "plural": "gmsacredentialspecs", "singular": "gmsacredentialspec", "listKind": "GMSACredentialSpecList"},
            "scope": "Cluster",
            "versions": [
                dict(version, name="v1alpha1", storage=False, deprecated=True),
                dict(version, name="v1", storage=True),
            ],
        },
    }


def namespace(settings: WebhookSettings) -> dict[str, Any]:
    """The webhook's namespace when the collection creates it: skipped by its own webhooks, held to the restricted
    Pod Security level. A namespace that already exists is never given these labels (see :func:`created_namespace`)."""
    metadata = _meta(settings, settings.namespace, namespaced=False)
    metadata["labels"].update({OPT_OUT_LABEL: "true", "pod-security.kubernetes.io/enforce": "restricted"})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def created_namespace(live: dict[str, Any] | None, settings: WebhookSettings) -> bool:
    """Whether ``live`` is a namespace this collection created for this install: labelled as ours, naming itself."""
    live_labels = (live or {}).get("metadata", {}).get("labels") or {}
    return live_labels.get(MANAGED_BY_LABEL) == MANAGED_BY and live_labels.get(INSTALL_NAMESPACE_LABEL) == settings.namespace


def service_account(settings: WebhookSettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(settings, settings.name)}


def cluster_role(settings: WebhookSettings) -> dict[str, Any]:
    """Least privilege: read credspecs to inline them, ask the API server whether a service account may use one.

    The chart also grants ``use``; the webhook never uses a credspec itself, so it is left out.
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(settings, settings.name, namespaced=False),
        "rules": [
            {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
        ],
    }


def view_cluster_role(settings: WebhookSettings) -> dict[str, Any]:
    """Opt-in: aggregated into the built-in ``view`` role, so namespace viewers can read credspecs (upstream master 993de21)."""
    metadata = _meta(settings, f"{settings.name}-viewer", namespaced=False)
    metadata["labels"][VIEW_AGGREGATION_LABEL] = "true"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get", "list", "watch"]}],
    }


def cluster_role_binding(settings: WebhookSettings) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(settings, settings.name, namespaced=False),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings.name},
        "subjects": [{"kind": "ServiceAccount", "name": settings.name, "namespace": settings.namespace}],
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def ca_secret(settings: WebhookSettings, cert: str, key: str, previous_cert: str | None) -> dict[str, Any]:
    """The CA, kept apart from the serving Secret so the webhook pods never mount the CA key.

    ``previous_cert`` is the CA this one replaced, still trusted in the caBundle until it expires.
    """
    data = {"tls.crt": _b64(cert), "tls.key": _b64(key)}
    if previous_cert:
        data["previous.crt"] = _b64(previous_cert)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(settings, settings.ca_secret), "type": "kubernetes.io/tls", "data": data}


def tls_secret(settings: WebhookSettings, cert: str, key: str, ca_bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(settings, settings.tls_secret),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": _b64(cert), "tls.key": _b64(key), "ca.crt": _b64(ca_bundle)},
    }


def _default_affinity(settings: WebhookSettings) -> dict[str, Any]:
    # Replicas on different nodes, so one node going down does not take admission with it.
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": _selector(settings)}}
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}}


def deployment(settings: WebhookSettings, certificate_sha256: str | None) -> dict[str, Any]:
    """The webhook pods. ``certificate_sha256`` (the served certificate's) goes on the pod template, so a renewal
    rolls them; None (cert-manager has not issued yet) leaves it out."""
    env = [
        {"name": "TLS_CRT", "value": f"{TLS_MOUNT}/tls.crt"},
        {"name": "TLS_KEY", "value": f"{TLS_MOUNT}/tls.key"},
        {"name": "HTTPS_PORT", "value": str(CONTAINER_PORT)},
        {"name": "LOG_LEVEL", "value": settings.log_level},
        # Several replicas of a workload sharing one gMSA lose the domain trust unless each gets its own hostname.
        {"name": "RANDOM_HOSTNAME", "value": "true" if settings.random_hostname else "false"},
        # The webhook's client to the API server (main.go createKubeClient reads QPS and BURST).
        {"name": "QPS", "value": f"{settings.qps:g}"},
        {"name": "BURST", "value": str(settings.burst)},
    ]
    container = {
        "name": "webhook",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        # No --cert-reload: a renewal rolls the pods (see CERTIFICATE_ANNOTATION), which is reliable where the
        # reloader's fsnotify watch is not (it watches the files the kubelet's first ..data swap replaces).
        "env": env,
        "ports": [{"name": "https", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        # A rolled pod gets Service traffic only once it serves TLS.
        "readinessProbe": {"httpGet": {"scheme": "HTTPS", "path": "/health", "port": CONTAINER_PORT}, "periodSeconds": 2, "failureThreshold": 3},
        "resources": settings.resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True}],
    }
    if settings.pre_stop_seconds:
        # The binary exits at once on SIGTERM (main.go sets no signal handler), and the API server may still pick
        # the pod for a moment after it left the endpoints: a roll would drop those admissions. The image is FROM
        # scratch, with no sleep command, hence the kubelet's own sleep action.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": settings.pre_stop_seconds}}}
    pod_spec: dict[str, Any] = {
        "serviceAccountName": settings.name,
        "nodeSelector": dict(settings.node_selector, **{"kubernetes.io/os": "linux"}),
        "securityContext": {"runAsNonRoot": True, "runAsUser": NON_ROOT_UID, "runAsGroup": NON_ROOT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": settings.affinity if settings.affinity is not None else _default_affinity(settings),
        "containers": [container],
        "volumes": [{"name": "tls", "secret": {"secretName": settings.tls_secret}}],
    }
    if settings.tolerations:
        pod_spec["tolerations"] = list(settings.tolerations)
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.priority_class_name:
        pod_spec["priorityClassName"] = settings.priority_class_name
    template_metadata: dict[str, Any] = {"labels": labels(settings)}
    if certificate_sha256:
        template_metadata["annotations"] = {CERTIFICATE_ANNOTATION: certificate_sha256}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(settings, settings.name),
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": _selector(settings)},
            # A roll (renewal, upgrade) starts a new pod and waits for it to be ready before stopping an old one,
            # so the Service always has a ready pod.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


HANDOVER_LABEL = "wincontainers.gmsa/handover"


def handover_deployment(settings: WebhookSettings, certificate_sha256: str | None) -> dict[str, Any]:
    """The webhook pods that serve while an adopted install's Deployment is replaced (a selector cannot change).

    Its pods carry the install's labels, so the Service selects them and then the final Deployment's pods; its
    own selector adds a label the final pods lack, so each Deployment counts only its own pods.
    """
    handover = deployment(settings, certificate_sha256)
    handover["metadata"]["name"] = f"{settings.name}-handover"
    handover["spec"]["selector"]["matchLabels"][HANDOVER_LABEL] = "true"
    handover["spec"]["template"]["metadata"]["labels"][HANDOVER_LABEL] = "true"
    return handover


def service(settings: WebhookSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(settings, settings.name),
        "spec": {
            "selector": _selector(settings),
            "ports": [{"name": "https", "port": SERVICE_PORT, "targetPort": CONTAINER_PORT, "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(settings: WebhookSettings) -> dict[str, Any]:
    """At most one replica evicted at a time: with the default 2 replicas a drain keeps one serving.

    maxUnavailable 1 rather than minAvailable 1: the same with 2 or more replicas, but with replicas=1 a
    minAvailable 1 would block every node drain for good. Rollouts are governed by the Deployment's strategy.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(settings, settings.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(settings)}},
    }


def _webhook(settings: WebhookSettings, path: str, operations: list[str], ca_bundle: str | None) -> dict[str, Any]:
    client_config: dict[str, Any] = {"service": {"name": settings.name, "namespace": settings.namespace, "path": path, "port": SERVICE_PORT}}
    if ca_bundle is not None:
        client_config["caBundle"] = _b64(ca_bundle)
    excluded = sorted({settings.namespace, *settings.excluded_namespaces})
    return {
        "name": WEBHOOK_NAME,
        "clientConfig": client_config,
        "rules": [{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
        "failurePolicy": settings.failure_policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": settings.timeout_seconds,
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded},
                {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["true"]},
                {"key": LEGACY_OPT_OUT_LABEL, "operator": "NotIn", "values": [LEGACY_OPT_OUT_VALUE]},
            ]
        },
    }


def _webhook_configuration(settings: WebhookSettings, kind: str, webhook: dict[str, Any]) -> dict[str, Any]:
    metadata = _meta(settings, settings.name, namespaced=False)
    if settings.cert_manager:
        metadata["annotations"] = {"cert-manager.io/inject-ca-from": f"{settings.namespace}/{settings.name}"}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": metadata, "webhooks": [webhook]}


def mutating_webhook_configuration(settings: WebhookSettings, ca_bundle: str | None) -> dict[str, Any]:
    """Pod CREATE: the webhook inlines the named credspec's contents. ``ca_bundle`` None leaves it to cert-manager."""
    return _webhook_configuration(settings, "MutatingWebhookConfiguration", _webhook(settings, "/mutate", ["CREATE"], ca_bundle))


def validating_webhook_configuration(settings: WebhookSettings, ca_bundle: str | None) -> dict[str, Any]:
    """Pod CREATE and UPDATE: the service account may ``use`` the credspec and the inlined contents match it."""
    return _webhook_configuration(settings, "ValidatingWebhookConfiguration", _webhook(settings, "/validate", ["CREATE", "UPDATE"], ca_bundle))


def cert_manager_objects(settings: WebhookSettings, dns_names: list[str]) -> list[dict[str, Any]]:
    """A self-signed root, a CA issuer from it, and the serving Certificate cert-manager keeps renewed."""
    root, ca = f"{settings.name}-selfsigned", f"{settings.name}-ca"
    # cert-manager copies these labels onto the Secrets it writes, so they are recognised as this install's.
    secret_template = {"labels": labels(settings)}

    def cert_manager(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": _meta(settings, name), "spec": spec}

    return [
        cert_manager("Issuer", root, {"selfSigned": {}}),
        cert_manager(
            "Certificate",
            ca,
            {
                "isCA": True,
                # X.509 caps a common name at 64 characters.
                "commonName": ca[:64],
                "secretName": settings.ca_secret,
                "secretTemplate": secret_template,
                "duration": settings.ca_duration,
                "issuerRef": {"name": root, "kind": "Issuer"},
            },
        ),
        cert_manager("Issuer", ca, {"ca": {"secretName": settings.ca_secret}}),
        # Named like the install: the webhook configurations' inject-ca-from annotation points here.
        cert_manager(
            "Certificate",
            settings.name,
            {
                "secretName": settings.tls_secret,
                "secretTemplate": secret_template,
                "dnsNames": dns_names,
                "duration": settings.certificate_duration,
                "renewBefore": settings.certificate_renew_before,
                "privateKey": {"rotationPolicy": settings.private_key_rotation_policy},
                "issuerRef": {"name": ca, "kind": "Issuer"},
            },
        ),
    ]
