# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Waiting for the webhook (its Deployment Available, then admission answered by the webhook itself) and for workloads.

A ready Deployment only proves the pods pass their readiness probe. What the collection promises is that the
API server reaches the webhook through the Service with the caBundle it was given, so the last check is a
server-side dry-run create of a pod naming a credspec that does not exist: only a webhook that is called
and answers can refuse it with "cred spec ... does not exist". Nothing is persisted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster

# A wait checks again after FIRST_POLL_INTERVAL, then twice as long each time up to POLL_INTERVAL: a controller
# usually acts within a fraction of a second (a Deployment's generation moves with any change of its annotations,
# k8s.io/kubernetes pkg/registry/apps/deployment/strategy.go PrepareForUpdate, and the controller observes it at once),
# while a rollout that takes minutes is not polled more than once a second.
FIRST_POLL_INTERVAL = 0.1
POLL_INTERVAL = 1.0


class WaitTimeout(Exception):
    """The webhook did not become ready in time; the message names what is not ready."""


def deployment_status(deployment: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a Deployment is rolled out and Available, and if not, what is missing (pure)."""
    if deployment is None:
        return False, "the Deployment does not exist"
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return False, "the Deployment controller has not yet seen the latest spec"
    if status.get("updatedReplicas", 0) < wanted:
        return False, f"{status.get('updatedReplicas', 0)} of {wanted} replicas run the current pod template"
    available = next((c for c in status.get("conditions", []) if c.get("type") == "Available"), None)
    if available is None or available.get("status") != "True":
        reason = f" ({available.get('reason')}: {available.get('message')})" if available else ""
        return False, f"{status.get('readyReplicas', 0)} of {wanted} replicas ready, condition Available is not True{reason}"
    return True, f"{status.get('readyReplicas', 0)} of {wanted} replicas ready"


def _rollout_not_started(workload: dict[str, Any] | None, kind: str) -> tuple[bool, str] | None:
    """The status of a StatefulSet or DaemonSet that is missing, not rolled (OnDelete) or not yet seen; else None."""
    if workload is None:
        return False, f"the {kind} does not exist"
    if ((workload.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return True, "updateStrategy OnDelete: its pods change only when they are deleted"
    observed = (workload.get("status") or {}).get("observedGeneration", 0)
    if not 0 < observed >= workload["metadata"].get("generation", 0):
        return False, f"the {kind} controller has not yet seen the latest spec"
    return None


def statefulset_status(statefulset: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a StatefulSet is rolled out, as ``kubectl rollout status`` decides (pure).

    k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go (v0.36) StatefulSetStatusViewer: seen by the controller,
    every replica ready, then the replicas above a partition updated or, without one, the update revision current.
    """
    if (unrolled := _rollout_not_started(statefulset, "StatefulSet")) is not None:
        return unrolled
    spec, status = statefulset["spec"], statefulset.get("status") or {}
    wanted, ready = spec.get("replicas", 1), status.get("readyReplicas", 0)
    if ready < wanted:
        return False, f"{ready} of {wanted} replicas ready"
    updated = status.get("updatedReplicas", 0)
    # The API server defaults the partition to 0, which counts as one: every replica updated.
    partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition")
    above = f" above partition {partition}" if partition else ""
    if partition is not None:
        if updated < wanted - partition:
            return False, f"{updated} of {wanted - partition} replicas{above} run the current pod template"
        return True, f"{ready} of {wanted} replicas ready" + (f", those{above} updated" if above else "")
    if status.get("updateRevision") != status.get("currentRevision"):
        return False, f"{updated} of {wanted} replicas run the current pod template"
    return True, f"{ready} of {wanted} replicas ready"


def daemonset_status(daemonset: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a DaemonSet is rolled out, as ``kubectl rollout status`` decides (pure; DaemonSetStatusViewer there)."""
    if (unrolled := _rollout_not_started(daemonset, "DaemonSet")) is not None:
        return unrolled
    status = daemonset.get("status") or {}
    wanted = status.get("desiredNumberScheduled", 0)
    if status.get("updatedNumberScheduled", 0) < wanted:
        return False, f"{status.get('updatedNumberScheduled', 0)} of {wanted} scheduled pods run the current pod template"
    if status.get("numberAvailable", 0) < wanted:
        return False, f"{status.get('numberAvailable', 0)} of {wanted} scheduled pods available"
    return True, f"{status.get('numberAvailable', 0)} of {wanted} scheduled pods available"


# What a rollout of each kind is, where one can be waited for; other kinds (Job, CronJob) are applied without a wait.
ROLLOUT_STATUS: dict[str, Callable[[dict[str, Any] | None], tuple[bool, str]]] = {
    "Deployment": deployment_status,
    "StatefulSet": statefulset_status,
    "DaemonSet": daemonset_status,
}


def namespace_gone(namespace: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a namespace has finished terminating (pure): the API server refuses new objects in it until then."""
    if namespace is None:
        return True, "the namespace is gone"
    phase = (namespace.get("status") or {}).get("phase", "Active")
    conditions = [f"{c.get('type')}: {c.get('message')}" for c in (namespace.get("status") or {}).get("conditions", []) if c.get("status") == "True"]
    return False, f"namespace {namespace['metadata']['name']} is {phase}" + (f" ({'; '.join(conditions)})" if conditions else "")


def namespaces_gone(cluster: Cluster, names: list[str]) -> tuple[bool, str]:
    """Whether every namespace of ``names`` has finished terminating; if not, what the first one still is."""
    detail = "no namespace to wait for"
    for name in names:
        gone, detail = namespace_gone(cluster.get("Namespace", name))
        if not gone:
            return False, detail
    return True, detail


def endpoints_status(slices: list[dict[str, Any]], pods: list[dict[str, Any]], what: str) -> tuple[bool, str]:
    """Whether a Service's ready endpoints are all among ``pods`` and none is terminating (pure): traffic has moved.

    A Deployment counts a rollout complete once the old pods are deleting, but the EndpointSlice controller
    marks their endpoints not ready only afterwards, so the Service can still send them requests for a while.
    """
    wanted = {pod["metadata"]["name"] for pod in pods if not pod["metadata"].get("deletionTimestamp")}
    ready = sorted(
        (endpoint.get("targetRef") or {}).get("name", "?")
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
    )
    others = [name for name in ready if name not in wanted]
    if ready and not others:
        return True, f"{len(ready)} ready endpoints, all {what}"
    return False, f"ready endpoints {ready}; waiting for only {what}"


def probe_pod(namespace: str) -> dict[str, Any]:
    """A pod that only a running gMSA webhook refuses: it names a credspec that cannot exist."""
    marker = f"wincontainers-gmsa-probe-{uuid.uuid4().hex[:12]}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": marker, "namespace": namespace},
        "spec": {
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": marker}},
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "containers": [{"name": "probe", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}],
        },
    }


def admission_status(cluster: Cluster, namespace: str) -> tuple[bool, str]:
    """Whether the webhook answers admission for pods in ``namespace``, and what happened."""
    pod = probe_pod(namespace)
    try:
        cluster.create(pod, dry_run=True)
    except ApiError as error:
        if "does not exist" in str(error) and pod["metadata"]["name"] in str(error):
            return True, "the webhook refused a pod naming a missing credspec"
        if error.reason == "Forbidden" and "cannot create resource" in str(error):
            raise  # RBAC refuses the probe itself: waiting cannot help
        return False, f"admission of a probe pod in namespace {namespace} failed: {error}"
    return False, (
        f"a probe pod in namespace {namespace} naming a missing credspec was admitted: the webhook was not called, "
        "or failed and failurePolicy Ignore let the pod through"
    )


def wait_for(check: Callable[[], tuple[bool, str]], what: str, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll ``check`` until it passes; raise :class:`WaitTimeout` naming ``what`` and the last reason.

    The last check starts before the deadline, so a wait ends at most one check (one request) after it.
    """
    deadline = time.monotonic() + timeout
    interval = FIRST_POLL_INTERVAL
    while True:
        ready, detail = check()
        if ready:
            return detail
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{what} not ready after {timeout:g} s: {detail}")
        sleep(min(interval, remaining))
        interval = min(interval * 2, POLL_INTERVAL)
