"""The lab's Kubernetes half is a real control plane: schema validation, RBAC, and the real windows-gmsa webhook.

Run from the repository root: ``python -m pytest tests/integration/test_lab_kube.py`` (needs root for the
network namespace, Go for the first build).
"""

import base64
import datetime
import ipaddress
import json
import os
import re
import time

import pytest
import yaml
from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from kubernetes import client, config, utils
from kubernetes.client.rest import ApiException

from tests.lab import netns, stages, webhook

pytest_plugins = ("tests.lab.pytest_kube",)

CRD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files", "gmsa-crd.yml")
WEBHOOK_NAMESPACE = "lab-gmsa-webhook"
WEBHOOK_NAME = "gmsa-webhook"
APPS_NAMESPACE = "lab-gmsa-apps"
CREDSPEC_NAME = "lab-app"
CREDSPEC = {
    "CmsPlugins": ["ActiveDirectory"],
    "DomainJoinConfig": {
        "Sid": "S-1-5-21-2126449477-2524075714-3094792973",
        "MachineAccountName": "labapp",
        "Guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e",
        "DnsTreeName": "lab.example",
        "DnsName": "lab.example",
        "NetBiosName": "LAB",
    },
    "ActiveDirectoryConfig": {
        "GroupManagedServiceAccounts": [{"Name": "labapp", "Scope": "lab.example"}, {"Name": "labapp", "Scope": "LAB"}],
    },
}


@pytest.fixture(name="api", scope="module")
def fixture_api(kube_lab):
    return config.new_client_from_config(config_file=kube_lab["kubeconfig"])


def _apply(api, *manifests):
    for manifest in manifests:
        try:
            utils.create_from_dict(api, manifest)
        except utils.FailToCreateError as error:
            if any(cause.status != 409 for cause in error.api_exceptions):
                raise


def _wait(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.5)


@pytest.fixture(name="crd", scope="module")
def fixture_crd(api):
    with open(CRD_FILE, encoding="utf-8") as crd_file:
        _apply(api, yaml.safe_load(crd_file))
    extensions = client.ApiextensionsV1Api(api)

    def established():
        status = extensions.read_custom_resource_definition("gmsacredentialspecs.windows.k8s.io").status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    _wait(established, "the GMSACredentialSpec CRD")
    return client.CustomObjectsApi(api)


def _credspec(name, credspec):
    return {"apiVersion": "windows.k8s.io/v1", "kind": "GMSACredentialSpec", "metadata": {"name": name}, "credspec": credspec}


@pytest.fixture(name="credspec", scope="module")
def fixture_credspec(crd):
    try:
        crd.create_cluster_custom_object("windows.k8s.io", "v1", "gmsacredentialspecs", _credspec(CREDSPEC_NAME, CREDSPEC))
    except ApiException as error:
        if error.status != 409:
            raise
    return CREDSPEC_NAME


def _namespace(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def _service_account(namespace, name):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": namespace, "name": name}}


@pytest.fixture(name="app_accounts", scope="module")
def fixture_app_accounts(api, credspec):
    """Two service accounts in the apps namespace: `allowed` may use the credspec, `denied` may not."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "lab-use-" + credspec},
        "rules": [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"], "resourceNames": [credspec]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"namespace": APPS_NAMESPACE, "name": "allowed-uses-" + credspec},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "namespace": APPS_NAMESPACE, "name": "allowed"}],
    }
    _apply(api, _namespace(APPS_NAMESPACE), _service_account(APPS_NAMESPACE, "allowed"), _service_account(APPS_NAMESPACE, "denied"), role, binding)
    return {"allowed": "allowed", "denied": "denied"}


def test_nodes_include_a_ready_windows_node(api, kube_lab):
    nodes = {node.metadata.name: node for node in client.CoreV1Api(api).list_node().items}
    windows = nodes[kube_lab["nodes"]["windows"]]
    assert windows.metadata.labels["kubernetes.io/os"] == "windows"
    assert windows.metadata.labels["node.kubernetes.io/windows-build"] == "10.0.20348"
    assert {c.type: c.status for c in windows.status.conditions}["Ready"] == "True"
    assert nodes[kube_lab["nodes"]["linux"]].metadata.labels["kubernetes.io/os"] == "linux"


def test_schema_rejects_a_malformed_credspec(crd):
    malformed = _credspec("lab-malformed", dict(CREDSPEC, CmsPlugins="ActiveDirectory"))
    with pytest.raises(ApiException) as raised:
        crd.create_cluster_custom_object("windows.k8s.io", "v1", "gmsacredentialspecs", malformed)
    assert raised.value.status == 422
    assert "credspec.CmsPlugins" in raised.value.body


def _may_use(api, namespace, account, credspec):
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user="system:serviceaccount:%s:%s" % (namespace, account),
            groups=["system:serviceaccounts", "system:serviceaccounts:" + namespace],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb="use", group="windows.k8s.io", resource="gmsacredentialspecs", name=credspec
            ),
        )
    )
    return client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed


def test_rbac_grants_use_only_through_the_binding(api, app_accounts, credspec):
    assert _may_use(api, APPS_NAMESPACE, app_accounts["allowed"], credspec)
    assert not _may_use(api, APPS_NAMESPACE, app_accounts["denied"], credspec)
    assert not _may_use(api, APPS_NAMESPACE, app_accounts["allowed"], "some-other-credspec")


def _self_signed_tls(dns_name):
    """A CA (kept: it signs renewals) and a serving certificate for dns_name as PEM: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = _tls.new_ca("lab webhook CA", now, datetime.timedelta(days=1))
    server = _tls.new_server_cert(ca, [dns_name], now, datetime.timedelta(days=1))
    return ca, server.cert.encode(), server.key.encode()


def _webhook_install(ca, cert, key):
    """What an installer (the collection's gmsa_webhook module, later) creates; the lab only reads it."""
    meta = {"namespace": WEBHOOK_NAMESPACE, "name": WEBHOOK_NAME}
    labels = {"app": WEBHOOK_NAME}
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": meta,
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "lab-gmsa-webhook"},
        "rules": [
            {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get", "use"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "lab-gmsa-webhook"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lab-gmsa-webhook"},
        "subjects": [{"kind": "ServiceAccount", **meta}],
    }
    container = {
        "name": "webhook", "image": "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0",
        "args": ["--cert-reload"], "ports": [{"containerPort": 443}],
        "env": [{"name": "TLS_CRT", "value": "/tls/tls.crt"}, {"name": "TLS_KEY", "value": "/tls/tls.key"}],
        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": WEBHOOK_NAME, "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [container],
                    "volumes": [{"name": "tls", "secret": {"secretName": WEBHOOK_NAME}}],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 443}]}}
    return [_namespace(WEBHOOK_NAMESPACE, {"gmsa-webhook": "disabled"}), _service_account(WEBHOOK_NAMESPACE, WEBHOOK_NAME),
            secret, role, binding, deployment, service] + _webhook_configurations(ca)


def _webhook_configurations(ca):
    configurations = []
    for kind, path, operations in (("Mutating", "/mutate", ["CREATE"]), ("Validating", "/validate", ["CREATE", "UPDATE"])):
        hook = {
            "name": "admission-webhook.windows-gmsa.sigs.k8s.io",
            "clientConfig": {
                "service": {"namespace": WEBHOOK_NAMESPACE, "name": WEBHOOK_NAME, "path": path},
                "caBundle": base64.b64encode(ca).decode(),
            },
            "rules": [{"operations": operations, "apiGroups": [""], "apiVersions": ["*"], "resources": ["pods"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
            "namespaceSelector": {"matchExpressions": [{"key": "gmsa-webhook", "operator": "NotIn", "values": ["disabled"]}]},
        }
        configurations.append({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind + "WebhookConfiguration",
            "metadata": {"name": "lab-gmsa-webhook"}, "webhooks": [hook],
        })
    return configurations


def _delete_namespace(api, name):
    core = client.CoreV1Api(api)
    core.delete_namespace(name)
    _wait(lambda: name not in {namespace.metadata.name for namespace in core.list_namespace().items}, "namespace %s to go" % name)


@pytest.fixture(name="served_webhook", scope="module")
def fixture_served_webhook(api, kube_lab):
    ca, cert, key = _self_signed_tls("%s.%s.svc" % (WEBHOOK_NAME, WEBHOOK_NAMESPACE))
    _apply(api, *_webhook_install(ca.cert.encode(), cert, key))
    try:
        # The lab kubelet (started by labctl up) runs the real binary for the Deployment's pod.
        yield dict(webhook.wait_serving(kube_lab, WEBHOOK_NAMESPACE, WEBHOOK_NAME), ca=ca)
    finally:
        # With failurePolicy Fail, configurations left behind would refuse every later pod of the lab.
        admission = client.AdmissionregistrationV1Api(api)
        admission.delete_mutating_webhook_configuration("lab-gmsa-webhook")
        admission.delete_validating_webhook_configuration("lab-gmsa-webhook")
        # Deleting the namespace deletes the pod, and the lab kubelet stops its process and network namespace.
        _delete_namespace(api, WEBHOOK_NAMESPACE)


def test_webhook_pods_run_with_ips_in_the_lab_pod_range(served_webhook, kube_lab):
    assert served_webhook["addresses"]
    for address in served_webhook["addresses"]:
        assert ipaddress.ip_address(address) in ipaddress.ip_network(kube_lab["pod_cidr"])


def _pod(name, account, credspec_name):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace=APPS_NAMESPACE),
        spec=client.V1PodSpec(
            service_account_name=account,
            node_selector={"kubernetes.io/os": "windows"},
            security_context=client.V1PodSecurityContext(windows_options=client.V1WindowsSecurityContextOptions(gmsa_credential_spec_name=credspec_name)),
            containers=[client.V1Container(name="app", image="mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022")],
        ),
    )


def _create_pod(api, pod):
    core = client.CoreV1Api(api)
    try:
        core.delete_namespaced_pod(pod.metadata.name, APPS_NAMESPACE, grace_period_seconds=0)
    except ApiException as error:
        if error.status != 404:
            raise
    _wait(lambda: pod.metadata.name not in {p.metadata.name for p in core.list_namespaced_pod(APPS_NAMESPACE).items}, "the old pod to go")
    return core.create_namespaced_pod(APPS_NAMESPACE, pod)


@pytest.mark.usefixtures("served_webhook")
def test_authorized_pod_gets_the_credspec_contents_and_runs_on_windows(api, kube_lab, app_accounts, credspec):
    created = _create_pod(api, _pod("allowed", app_accounts["allowed"], credspec))
    assert json.loads(created.spec.security_context.windows_options.gmsa_credential_spec) == CREDSPEC

    def running():
        return client.CoreV1Api(api).read_namespaced_pod("allowed", APPS_NAMESPACE).status.phase == "Running"

    _wait(running, "kwok to run the pod")
    assert client.CoreV1Api(api).read_namespaced_pod("allowed", APPS_NAMESPACE).spec.node_name == kube_lab["nodes"]["windows"]


@pytest.mark.usefixtures("served_webhook")
def test_unauthorized_pod_is_refused_by_the_webhook(api, app_accounts, credspec):
    with pytest.raises(ApiException) as raised:
        _create_pod(api, _pod("denied", app_accounts["denied"], credspec))
    assert "is not authorized to `use` GMSA cred spec" in raised.value.body


@pytest.mark.usefixtures("served_webhook")
def test_pod_naming_a_missing_credspec_is_refused(api, app_accounts):
    with pytest.raises(ApiException) as raised:
        _create_pod(api, _pod("missing", app_accounts["allowed"], "no-such-credspec"))
    assert "cred spec no-such-credspec does not exist" in raised.value.body


# --- the lab kubelet: readiness, Secret projection, pod lifecycle --------------------------------------------


def _served_record(kube_lab, pod_name):
    records = {record["pod"]: record for record in webhook.status(kube_lab["state_dir"]).values()}
    return records.get("%s/%s" % (WEBHOOK_NAMESPACE, pod_name))


def _webhook_pods(api):
    return client.CoreV1Api(api).list_namespaced_pod(WEBHOOK_NAMESPACE, label_selector="app=" + WEBHOOK_NAME).items


def test_served_pod_is_ready_and_a_pod_nothing_runs_is_not(api, kube_lab, served_webhook):
    (pod,) = _webhook_pods(api)
    assert pod.metadata.annotations[stages.SERVING_ANNOTATION] == "true"
    assert {condition.type: condition.status for condition in pod.status.conditions}["Ready"] == "True"
    assert _served_record(kube_lab, pod.metadata.name)["addresses"] == served_webhook["addresses"]
    # Another tag of the image: kwok gives the pod an IP and Running, but no binary serves it, so it never turns Ready.
    apps = client.AppsV1Api(api)
    deployment = next(manifest for manifest in _webhook_install(b"", b"", b"") if manifest["kind"] == "Deployment")
    labels = {"app": "gmsa-webhook-old"}
    deployment["metadata"] = dict(deployment["metadata"], name="gmsa-webhook-old")
    deployment["spec"]["selector"]["matchLabels"] = deployment["spec"]["template"]["metadata"]["labels"] = labels
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = container["image"].replace(":v0.13.0", ":v0.12.1")
    apps.create_namespaced_deployment(WEBHOOK_NAMESPACE, deployment)
    try:
        core = client.CoreV1Api(api)

        def running_old_pod():
            pods = core.list_namespaced_pod(WEBHOOK_NAMESPACE, label_selector="app=gmsa-webhook-old").items
            return pods[0] if pods and pods[0].status.phase == "Running" and pods[0].status.pod_ip else None

        _wait(running_old_pod, "the v0.12.1 pod to run")
        time.sleep(3 * webhook.SYNC_SECONDS)  # what the lab kubelet would take to serve it, had it the binary
        old = running_old_pod()
        assert {condition.type: condition.status for condition in old.status.conditions}["Ready"] == "False"
        assert stages.SERVING_ANNOTATION not in (old.metadata.annotations or {})
        assert _served_record(kube_lab, old.metadata.name) is None
    finally:
        apps.delete_namespaced_deployment("gmsa-webhook-old", WEBHOOK_NAMESPACE)


def test_a_renewed_secret_reaches_the_pod_as_an_atomic_data_swap(api, kube_lab, served_webhook):
    (pod,) = _webhook_pods(api)
    volume = os.path.join(_served_record(kube_lab, pod.metadata.name)["directory"], "volumes", "tls")
    before = os.readlink(os.path.join(volume, "..data"))
    assert os.readlink(os.path.join(volume, "tls.crt")) == "..data/tls.crt"
    renewed = _tls.new_server_cert(served_webhook["ca"], ["%s.%s.svc" % (WEBHOOK_NAME, WEBHOOK_NAMESPACE)], datetime.datetime.now(datetime.timezone.utc),
                                   datetime.timedelta(days=1))
    data = {"tls.crt": base64.b64encode(renewed.cert.encode()).decode(), "tls.key": base64.b64encode(renewed.key.encode()).decode()}
    client.CoreV1Api(api).patch_namespaced_secret(WEBHOOK_NAME, WEBHOOK_NAMESPACE, {"data": data})
    _wait(lambda: os.readlink(os.path.join(volume, "..data")) != before, "the renewed Secret in the pod's volume", timeout=4 * webhook.SYNC_SECONDS)
    after = os.readlink(os.path.join(volume, "..data"))
    # k8s.io/kubernetes pkg/volume/util/atomic_writer.go: a new ..YYYY_MM_DD_HH_MM_SS.<random> directory, ..data
    # swapped to it, the user-visible names still links through ..data, the old directory gone.
    assert re.match(r"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.", after)
    assert not os.path.exists(os.path.join(volume, before))
    assert sorted(os.listdir(volume)) == sorted(["..data", after, "tls.crt", "tls.key"])
    with open(os.path.join(volume, "tls.crt"), encoding="utf-8") as projected:
        assert projected.read() == renewed.cert


@pytest.mark.usefixtures("served_webhook")
def test_a_deleted_pod_loses_its_process_and_network_namespace(api, kube_lab):
    (pod,) = _webhook_pods(api)
    record = _served_record(kube_lab, pod.metadata.name)
    client.CoreV1Api(api).delete_namespaced_pod(pod.metadata.name, WEBHOOK_NAMESPACE)
    # The ReplicaSet makes another pod; the lab kubelet serves it and tears the old one down.
    replacement = webhook.wait_serving(kube_lab, WEBHOOK_NAMESPACE, WEBHOOK_NAME)
    _wait(lambda: _served_record(kube_lab, pod.metadata.name) is None, "the deleted pod to be forgotten")
    assert replacement["pods"] != ["%s/%s" % (WEBHOOK_NAMESPACE, pod.metadata.name)]
    assert not os.path.exists(os.path.join("/run/netns", record["netns"]))
    assert not any(netns.is_running(pid, "") for pid in record["pids"].values())
    assert not os.path.exists(record["directory"])
