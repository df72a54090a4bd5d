"""Unit tests for the waiter: what counts as ready, and timeouts that name what is not."""

import time

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _waiter
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError


def _deployment(generation=2, observed=2, replicas=2, updated=2, ready=2, available="True"):
    conditions = [{"type": "Available", "status": available, "reason": "MinimumReplicasUnavailable", "message": "not enough"}]
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "readyReplicas": ready, "conditions": conditions},
    }


@pytest.mark.parametrize(
    ("deployment", "ready", "detail"),
    [
        (None, False, "the Deployment does not exist"),
        (_deployment(observed=1), False, "the Deployment controller has not yet seen the latest spec"),
        (_deployment(updated=1), False, "1 of 2 replicas run the current pod template"),
        (_deployment(ready=1, available="False"), False, "1 of 2 replicas ready, condition Available is not True (MinimumReplicasUnavailable: not enough)"),
        (_deployment(), True, "2 of 2 replicas ready"),
    ],
)
def test_deployment_status(deployment, ready, detail):
    assert _waiter.deployment_status(deployment) == (ready, detail)


class ProbeCluster:
    def __init__(self, error=None):
        self.error = error
        self.created = []

    def create(self, obj, dry_run=False):
        assert dry_run, "the probe must never be stored"
        self.created.append(obj)
        if self.error:
            raise self.error(obj["metadata"]["name"])
        return obj


def test_probe_refused_by_the_webhook_proves_admission():
    def refusal(name):
        return ApiError(f'creating Pod default/{name}: admission webhook "x" denied the request: cred spec {name} does not exist', 400)

    cluster = ProbeCluster(refusal)
    assert _waiter.admission_status(cluster, "default") == (True, "the webhook refused a pod naming a missing credspec")
    assert cluster.created[0]["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] == cluster.created[0]["metadata"]["name"]


def test_unreachable_webhook_is_not_ready():
    cluster = ProbeCluster(lambda name: ApiError('creating Pod default/x: Internal error occurred: failed calling webhook "x": connection refused', 500))
    ready, detail = _waiter.admission_status(cluster, "default")
    assert not ready and "connection refused" in detail


def test_admitted_probe_means_the_webhook_is_not_called():
    ready, detail = _waiter.admission_status(ProbeCluster(), "default")
    assert not ready and "was admitted" in detail


def test_rbac_refusing_the_probe_fails_at_once():
    error = ApiError('creating Pod default/x: forbidden by RBAC: pods "x" is forbidden: User "u" cannot create resource "pods"', 403, "Forbidden")
    with pytest.raises(ApiError, match="cannot create resource"):
        _waiter.admission_status(ProbeCluster(lambda name: error), "default")


def test_wait_for_returns_once_ready_and_times_out_naming_what():
    answers = iter([(False, "0 of 2 replicas ready"), (True, "2 of 2 replicas ready")])
    assert _waiter.wait_for(lambda: next(answers), "Deployment ns/web", timeout=10, sleep=lambda _seconds: None) == "2 of 2 replicas ready"
    with pytest.raises(_waiter.WaitTimeout, match=r"^Deployment ns/web not ready after 0 s: 0 of 2 replicas ready$"):
        _waiter.wait_for(lambda: (False, "0 of 2 replicas ready"), "Deployment ns/web", timeout=0, sleep=lambda _seconds: None)


def test_a_wait_checks_again_soon_then_backs_off_to_once_a_second():
    slept = []
    answers = iter([(False, "not yet")] * 6 + [(True, "ready")])
    assert _waiter.wait_for(lambda: next(answers), "Deployment ns/web", timeout=60, sleep=slept.append) == "ready"
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_terminating_namespace_is_not_gone_until_the_api_server_forgets_it():
    terminating = {
        "metadata": {"name": "gmsa-webhook"},
        "status": {"phase": "Terminating", "conditions": [{"type": "NamespaceFinalizersRemaining", "status": "True", "message": "hold in 1 resource"}]},
    }
    assert _waiter.namespace_gone(terminating) == (False, "namespace gmsa-webhook is Terminating (NamespaceFinalizersRemaining: hold in 1 resource)")
    assert _waiter.namespace_gone(None) == (True, "the namespace is gone")


def test_namespaces_are_gone_only_when_each_is_and_the_first_left_is_named():
    class Namespaces:
        def __init__(self, live):
            self.live = live

        def get(self, kind, name, namespace=None):
            assert (kind, namespace) == ("Namespace", None)
            return self.live.get(name)

    terminating = {"metadata": {"name": "web"}, "status": {"phase": "Terminating"}}
    assert _waiter.namespaces_gone(Namespaces({"web": terminating}), ["ops", "web"]) == (False, "namespace web is Terminating")
    assert _waiter.namespaces_gone(Namespaces({}), ["ops", "web"]) == (True, "the namespace is gone")


def test_traffic_has_moved_only_when_every_ready_endpoint_is_a_wanted_pod_that_is_not_shutting_down():
    def slices(*pods):
        return [{"endpoints": [{"targetRef": {"name": pod}, "conditions": {"ready": ready}} for pod, ready in pods]}]

    def pod(name, deleting=False):
        return {"metadata": dict({"name": name}, **({"deletionTimestamp": "2026-12-01T00:00:00Z"} if deleting else {}))}

    new = [pod("gmsa-webhook-new")]
    assert _waiter.endpoints_status(slices(("gmsa-webhook-new", True), ("gmsa-webhook-old", True)), new, "new pods") == (
        False, "ready endpoints ['gmsa-webhook-new', 'gmsa-webhook-old']; waiting for only new pods")
    ready = _waiter.endpoints_status(slices(("gmsa-webhook-new", True), ("gmsa-webhook-old", False)), new, "new pods")
    assert ready == (True, "1 ready endpoints, all new pods")
    # The Deployment already counts a deleting pod out; its endpoint can still be ready until the controller catches up.
    assert _waiter.endpoints_status(slices(("gmsa-webhook-new", True)), [pod("gmsa-webhook-new", deleting=True)], "new pods")[0] is False
    assert _waiter.endpoints_status([], new, "new pods") == (False, "ready endpoints []; waiting for only new pods")


def test_a_wait_ends_at_most_one_check_after_its_deadline():
    def slow_check():
        time.sleep(0.1)  # a request to the API server
        return False, "0 of 2 replicas ready"

    started = time.monotonic()
    with pytest.raises(_waiter.WaitTimeout):
        _waiter.wait_for(slow_check, "Deployment ns/web", timeout=0.5)
    # Not a whole poll interval (1 s) of sleep past the deadline.
    assert time.monotonic() - started < 0.5 + 0.1 + 0.2


def _statefulset(replicas=3, ready=3, observed=2, partition=None, current="r1", update="r1", updated=3, strategy="RollingUpdate"):
    update_strategy = {"type": strategy, **({"rollingUpdate": {"partition": partition}} if partition is not None else {})}
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas, "updateStrategy": update_strategy},
        "status": {"observedGeneration": observed, "readyReplicas": ready, "updatedReplicas": updated, "currentRevision": current, "updateRevision": update},
    }


# As k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go (v0.36) decides for a StatefulSet.
@pytest.mark.parametrize(
    ("statefulset", "ready", "detail"),
    [
        (None, False, "the StatefulSet does not exist"),
        (_statefulset(observed=1), False, "the StatefulSet controller has not yet seen the latest spec"),
        (_statefulset(observed=0), False, "the StatefulSet controller has not yet seen the latest spec"),
        (_statefulset(ready=2), False, "2 of 3 replicas ready"),
        (_statefulset(update="r2", updated=1), False, "1 of 3 replicas run the current pod template"),
        (_statefulset(partition=2, update="r2", updated=0), False, "0 of 1 replicas above partition 2 run the current pod template"),
        (_statefulset(partition=2, update="r2", updated=1), True, "3 of 3 replicas ready, those above partition 2 updated"),
        # A partition of 0 is a partition: every replica must be updated, whatever the revisions say.
        (_statefulset(partition=0, update="r2", updated=3), True, "3 of 3 replicas ready"),
        (_statefulset(partition=0, update="r2", updated=2), False, "2 of 3 replicas run the current pod template"),
        (_statefulset(strategy="OnDelete", ready=0), True, "updateStrategy OnDelete: its pods change only when they are deleted"),
        (_statefulset(), True, "3 of 3 replicas ready"),
    ],
)
def test_statefulset_status(statefulset, ready, detail):
    assert _waiter.statefulset_status(statefulset) == (ready, detail)


def _daemonset(observed=2, desired=2, updated=2, available=2):
    return {
        "metadata": {"generation": 2},
        "spec": {},
        "status": {"observedGeneration": observed, "desiredNumberScheduled": desired, "updatedNumberScheduled": updated, "numberAvailable": available},
    }


@pytest.mark.parametrize(
    ("daemonset", "ready", "detail"),
    [
        (None, False, "the DaemonSet does not exist"),
        (_daemonset(observed=1), False, "the DaemonSet controller has not yet seen the latest spec"),
        (_daemonset(updated=1), False, "1 of 2 scheduled pods run the current pod template"),
        (_daemonset(available=1), False, "1 of 2 scheduled pods available"),
        (_daemonset(), True, "2 of 2 scheduled pods available"),
    ],
)
def test_daemonset_status(daemonset, ready, detail):
    assert _waiter.daemonset_status(daemonset) == (ready, detail)
