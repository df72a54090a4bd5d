"""Unit tests for the client's error messages: what a 403 means depends on who refused."""

import json
from types import SimpleNamespace

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster
from kubernetes.dynamic.exceptions import DynamicApiError

# The body kube-apiserver sends when the NamespaceLifecycle admission plugin refuses a create
# (k8s.io/apiserver pkg/admission/plugin/namespace/lifecycle/admission.go: NewForbidden plus a NamespaceTerminating
# cause, whose type metav1.StatusCause serialises under the key "reason").
TERMINATING = {
    "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
    "message": 'serviceaccounts "gmsa-webhook" is forbidden: unable to create new content in namespace gmsa-webhook because it is being terminated',
    "details": {"name": "gmsa-webhook", "kind": "serviceaccounts", "causes": [
        {"reason": "NamespaceTerminating", "message": "namespace gmsa-webhook is being terminated", "field": "metadata.namespace"},
    ]},
}
RBAC = {
    "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
    "message": 'serviceaccounts "gmsa-webhook" is forbidden: User "system:serviceaccount:apps:nobody" cannot patch resource "serviceaccounts"',
    "details": {"name": "gmsa-webhook", "kind": "serviceaccounts"},
}


def _refusing_cluster(body):
    def request(*_args, **_kwargs):
        raise DynamicApiError(SimpleNamespace(status=403, reason="Forbidden", body=json.dumps(body), headers={}))

    cluster = object.__new__(Cluster)
    cluster._client = SimpleNamespace(request=request)
    cluster.host = "https://127.0.0.1:6443"
    return cluster


def test_a_terminating_namespace_is_not_reported_as_rbac():
    with pytest.raises(ApiError) as refused:
        _refusing_cluster(TERMINATING).apply({"kind": "ServiceAccount", "metadata": {"name": "gmsa-webhook", "namespace": "gmsa-webhook"}})
    assert "RBAC" not in str(refused.value)
    assert "refused because the namespace is being deleted" in str(refused.value) and "is being terminated" in str(refused.value)
    assert refused.value.status == 403


def test_other_forbidden_answers_are_rbac():
    with pytest.raises(ApiError, match="forbidden by RBAC: serviceaccounts"):
        _refusing_cluster(RBAC).apply({"kind": "ServiceAccount", "metadata": {"name": "gmsa-webhook", "namespace": "gmsa-webhook"}})
