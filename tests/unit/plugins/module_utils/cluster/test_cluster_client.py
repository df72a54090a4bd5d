"""Unit tests for the client's error messages: what a 403 means depends on who refused."""

import json
import re
import time
from types import SimpleNamespace

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _client
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._connection import StatusError

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


def _cluster_over(send):
    """A Cluster whose transport is ``send``."""
    cluster = object.__new__(Cluster)
    cluster._transport = SimpleNamespace(send=send)
    cluster.host = "https://127.0.0.1:6443"
    return cluster


def _refusing_cluster(body):
    def send(*_args):
        raise StatusError(403, "Forbidden", json.dumps(body), {})

    return _cluster_over(send)


def test_a_terminating_namespace_is_not_reported_as_rbac():
    with pytest.raises(ApiError) as refused:
        _refusing_cluster(TERMINATING).apply({"kind": "ServiceAccount", "metadata": {"name": "gmsa-webhook", "namespace": "gmsa-webhook"}})
    assert "RBAC" not in str(refused.value)
    assert "refused because the namespace is being deleted" in str(refused.value) and "is being terminated" in str(refused.value)
    assert refused.value.status == 403


def test_other_forbidden_answers_are_rbac():
    with pytest.raises(ApiError, match="forbidden by RBAC: serviceaccounts"):
        _refusing_cluster(RBAC).apply({"kind": "ServiceAccount", "metadata": {"name": "gmsa-webhook", "namespace": "gmsa-webhook"}})


@pytest.mark.parametrize("denial", [
    # k8s.io/apiserver pkg/admission/plugin/webhook/errors/statuserror.go ToStatusErr, with windows-gmsa's 403
    # (admission-webhook/webhook.go podAdmissionError code http.StatusForbidden).
    'admission webhook "admission.windows-gmsa.sigs.k8s.io" denied the request: service account "default" is not authorized to `use` gMSA cred spec',
    # k8s.io/apiserver pkg/admission/plugin/policy/validating/dispatcher.go
    "namespaces \"web\" is forbidden: ValidatingAdmissionPolicy 'gmsa-opt-out-label' with binding 'gmsa-opt-out-label' denied request: only members",
])
def test_an_admission_refusal_is_not_reported_as_rbac(denial):
    body = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403, "message": denial}
    with pytest.raises(ApiError) as refused:
        _refusing_cluster(body).create({"kind": "Pod", "metadata": {"name": "probe", "namespace": "web"}}, dry_run=True)
    assert str(refused.value) == f"creating Pod web/probe: refused by admission: {denial}"


def _cluster_answering(*answers):
    """A Cluster whose requests get ``answers`` in turn: a dict is a JSON answer, an int an error status (with
    ``Retry-After: 1`` when positive, without it when negative)."""
    requests = []

    def send(method, path, query, headers, _body, _timeout):
        requests.append((method, path, dict(query, headers=headers)))
        answer = answers[len(requests) - 1]
        if isinstance(answer, int):
            raise StatusError(abs(answer), "Too Many Requests", "{}", {"Retry-After": "1"} if answer > 0 else {})
        return json.dumps(answer).encode()

    return _cluster_over(send), requests


SERVICE_ACCOUNT = {"kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "apps"}}


def test_a_request_turned_away_for_load_is_sent_again_after_the_time_the_server_asks_for(monkeypatch):
    waits = []
    monkeypatch.setattr(_client.time, "sleep", waits.append)
    cluster, requests = _cluster_answering(429, 503, {"kind": "ServiceAccount"})
    assert cluster.apply(SERVICE_ACCOUNT) == {"kind": "ServiceAccount"}
    assert len(requests) == 3 and waits == [1, 1]


def test_retries_stop_where_client_go_stops_and_the_error_says_so(monkeypatch):
    waits = []
    monkeypatch.setattr(_client.time, "sleep", waits.append)
    cluster, requests = _cluster_answering(*[429] * (_client.MAX_RETRIES + 1))
    with pytest.raises(ApiError, match=f"still so after {_client.MAX_RETRIES} retries") as refused:
        cluster.apply(SERVICE_ACCOUNT)
    assert refused.value.status == 429 and len(requests) == _client.MAX_RETRIES + 1 and len(waits) == _client.MAX_RETRIES


@pytest.mark.parametrize("status", [-429, -500, 409])
def test_without_retry_after_or_for_other_errors_nothing_is_sent_again(monkeypatch, status):
    monkeypatch.setattr(_client.time, "sleep", lambda _seconds: pytest.fail("waited"))
    cluster, requests = _cluster_answering(status)
    with pytest.raises(ApiError):
        cluster.apply(SERVICE_ACCOUNT)
    assert len(requests) == 1


def test_a_list_is_read_page_by_page():
    cluster, requests = _cluster_answering(
        {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "next"}},
        {"items": [{"metadata": {"name": "b"}}], "metadata": {}},
    )
    items = cluster.list("Secret", "apps", label_selector="x=y")
    assert [item["metadata"]["name"] for item in items] == ["a", "b"]
    assert all(item["kind"] == "Secret" and item["apiVersion"] == "v1" for item in items)
    assert [params.get("continue") for _method, _path, params in requests] == [None, "next"]
    assert {params["limit"] for _method, _path, params in requests} == {_client.PAGE_SIZE}
    assert all(params["labelSelector"] == "x=y" and "Accept" not in params["headers"] for _method, _path, params in requests)


def test_a_metadata_listing_asks_for_partial_object_metadata():
    # kube-apiserver answers an empty PartialObjectMetadataList with "items": null.
    cluster, requests = _cluster_answering({"kind": "PartialObjectMetadataList", "items": None, "metadata": {}})
    assert cluster.list("Secret", "apps", metadata_only=True) == []
    assert requests[0][2]["headers"] == {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def test_namespaced_kinds_are_the_listable_namespaced_resources_of_each_preferred_version():
    cluster, requests = _cluster_answering(
        {"groups": [
            {"name": "apps", "preferredVersion": {"groupVersion": "apps/v1"}},
            {"name": "metrics.k8s.io", "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1"}},
        ]},
        {"resources": [
            {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["get", "list"]},
            {"name": "pods/log", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
            {"name": "bindings", "kind": "Binding", "namespaced": True, "verbs": ["create"]},
            {"name": "nodes", "kind": "Node", "namespaced": False, "verbs": ["list"]},
        ]},
        {"resources": [{"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list"]}]},
        -503,
    )
    kinds, failed = cluster.namespaced_kinds()
    assert [(kind.api_version, kind.kind, kind.path("web")) for kind in kinds] == [
        ("v1", "ConfigMap", "/api/v1/namespaces/web/configmaps"), ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/web/deployments"),
    ]
    assert len(failed) == 1 and failed[0].startswith("metrics.k8s.io/v1beta1 (discovering metrics.k8s.io/v1beta1:")
    assert [path for _method, path, _params in requests] == ["/apis", "/api/v1", "/apis/apps/v1", "/apis/metrics.k8s.io/v1beta1"]


@pytest.mark.parametrize(("answer", "version"), [({"major": "1", "minor": "36"}, (1, 36)), ({"major": "1", "minor": "30+"}, (1, 30)), ({}, (0, 0))])
def test_server_version_reads_major_and_minor(answer, version):
    assert _cluster_over(lambda *_args: json.dumps(answer).encode()).server_version() == version


# --- a hung API server: each request ends within its timeout, with an error naming the server ----------------------

# Short for the tests; the margin is what a loaded machine needs to start a request and raise.
TEST_TIMEOUT = 1
MARGIN = 1.5


# Impersonation is one of the settings only kubernetes.core's client carries out (_connection.direct_endpoint).
THROUGH_KUBERNETES_CORE = {"impersonate_user": "system:serviceaccount:apps:deployer"}


def _cluster_module(host, **options):
    """A cluster module's AnsibleK8SModule pointed at ``host`` with a token (no kubeconfig, no environment)."""
    with patch_module_args({"host": host, "api_key": "not-a-real-token", "validate_certs": False, **options}):
        return _client.cluster_module({})


def test_a_server_that_never_answers_discovery_ends_in_a_timeout_naming_it(hung_peer, monkeypatch):
    # kubernetes.core's client asks for API discovery as it is created; HttpTransport sends nothing before a request.
    monkeypatch.setattr(_client, "REQUEST_TIMEOUT", TEST_TIMEOUT)
    host = f"https://127.0.0.1:{hung_peer}"
    started = time.monotonic()
    with pytest.raises(ApiError, match=f"cannot reach the Kubernetes API server at {re.escape(host)}: no answer to API discovery within 1 s"):
        Cluster(_cluster_module(host, **THROUGH_KUBERNETES_CORE))
    assert time.monotonic() - started < TEST_TIMEOUT + MARGIN


@pytest.mark.parametrize("options", [{}, THROUGH_KUBERNETES_CORE], ids=["http-transport", "kubernetes-transport"])
def test_a_request_the_server_never_answers_ends_after_one_timeout_naming_it(api_server_hung_after_discovery, monkeypatch, options):
    monkeypatch.setattr(_client, "REQUEST_TIMEOUT", TEST_TIMEOUT)
    cluster = Cluster(_cluster_module(api_server_hung_after_discovery, **options))
    started = time.monotonic()
    with pytest.raises(ApiError, match=f"reading Namespace web: cannot reach the Kubernetes API server at {re.escape(api_server_hung_after_discovery)}"):
        cluster.get("Namespace", "web")
    # One attempt: urllib3 would otherwise send the GET 3 more times, each with the whole timeout.
    assert time.monotonic() - started < TEST_TIMEOUT + MARGIN
