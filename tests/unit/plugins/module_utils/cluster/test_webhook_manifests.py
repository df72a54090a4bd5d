"""Unit tests for the webhook manifests: what upstream requires, and where the collection is stricter."""

import base64

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _webhook_manifests as manifests

SETTINGS = manifests.WebhookSettings(namespace="gmsa-system")


def _by_name(items):
    return {item["name"]: item for item in items}


def test_crd_serves_v1alpha1_and_stores_v1_with_one_schema():
    crd = manifests.crd()
    assert crd["metadata"]["name"] == "gmsacredentialspecs.windows.k8s.io"
    assert crd["spec"]["scope"] == "Cluster"
    versions = _by_name(crd["spec"]["versions"])
    assert versions["v1"]["storage"] and versions["v1"]["served"]
    assert not versions["v1alpha1"]["storage"] and versions["v1alpha1"]["deprecated"]
    assert versions["v1"]["schema"] == versions["v1alpha1"]["schema"]
    credspec = versions["v1"]["schema"]["openAPIV3Schema"]["properties"]["credspec"]["properties"]
    assert set(credspec["DomainJoinConfig"]["properties"]) == {"Sid", "MachineAccountName", "Guid", "DnsTreeName", "DnsName", "NetBiosName"}
    # Without HostAccountConfig in the schema the API server would prune it from every credspec.
    assert set(credspec["ActiveDirectoryConfig"]["properties"]["HostAccountConfig"]["properties"]) == {"PortableCcgVersion", "PluginGUID", "PluginInput"}


def test_webhook_rbac_is_least_privilege():
    rules = manifests.cluster_role(SETTINGS)["rules"]
    assert rules == [
        {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
    ]
    binding = manifests.cluster_role_binding(SETTINGS)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gmsa-webhook", "namespace": "gmsa-system"}]


def test_namespace_opts_out_of_its_own_webhooks():
    labels = manifests.namespace(SETTINGS)["metadata"]["labels"]
    assert labels[manifests.OPT_OUT_LABEL] == "true"
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_deployment_runs_non_root_on_linux_with_cert_reload():
    settings = manifests.WebhookSettings(
        namespace="gmsa-system", node_selector={"pool": "system"}, tolerations=({"key": "dedicated", "operator": "Exists"},), random_hostname=True
    )
    spec = manifests.deployment(settings)["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert pod["nodeSelector"] == {"pool": "system", "kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["args"] == ["--cert-reload"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TLS_CRT"] == "/tls/tls.crt" and env["TLS_KEY"] == "/tls/tls.key"
    assert env["HTTPS_PORT"] == str(manifests.CONTAINER_PORT) and manifests.CONTAINER_PORT > 1024
    assert env["RANDOM_HOSTNAME"] == "true"
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "gmsa-webhook-tls"}}]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_service_and_pdb_select_the_deployment_pods():
    pod_labels = manifests.deployment(SETTINGS)["spec"]["template"]["metadata"]["labels"]
    service = manifests.service(SETTINGS)["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": manifests.CONTAINER_PORT, "protocol": "TCP"}]
    pdb = manifests.pod_disruption_budget(SETTINGS)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items() and pdb["maxUnavailable"] == 1


@pytest.mark.parametrize(
    ("builder", "path", "operations"),
    [(manifests.mutating_webhook_configuration, "/mutate", ["CREATE"]), (manifests.validating_webhook_configuration, "/validate", ["CREATE", "UPDATE"])],
)
def test_webhook_configurations(builder, path, operations):
    settings = manifests.WebhookSettings(namespace="gmsa-system", failure_policy="Ignore", timeout_seconds=5)
    (webhook,) = builder(settings, "CA PEM")["webhooks"]
    assert webhook["clientConfig"]["service"] == {"name": "gmsa-webhook", "namespace": "gmsa-system", "path": path, "port": 443}
    assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == b"CA PEM"
    assert webhook["rules"][0]["operations"] == operations and webhook["rules"][0]["resources"] == ["pods"]
    assert webhook["failurePolicy"] == "Ignore" and webhook["timeoutSeconds"] == 5 and webhook["sideEffects"] == "None"
    assert webhook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["gmsa-system", "kube-system"]},
        {"key": "windows.k8s.io/disabled", "operator": "NotIn", "values": ["true"]},
    ]


def test_cert_manager_mode_injects_the_ca_instead_of_a_bundle():
    settings = manifests.WebhookSettings(namespace="gmsa-system", cert_manager=True)
    configuration = manifests.validating_webhook_configuration(settings, None)
    assert configuration["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "gmsa-system/gmsa-webhook"}
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    objects = {(obj["kind"], obj["metadata"]["name"]): obj for obj in manifests.cert_manager_objects(settings, ["a.svc"])}
    serving = objects[("Certificate", "gmsa-webhook")]["spec"]
    assert serving["secretName"] == settings.tls_secret and serving["dnsNames"] == ["a.svc"]
    assert objects[("Certificate", "gmsa-webhook-ca")]["spec"]["isCA"]


def test_every_object_is_labelled_as_ours_and_cluster_scoped_ones_name_their_install():
    objects = [
        manifests.crd(),
        manifests.namespace(SETTINGS),
        manifests.service_account(SETTINGS),
        manifests.cluster_role(SETTINGS),
        manifests.cluster_role_binding(SETTINGS),
        manifests.ca_secret(SETTINGS, "c", "k", None),
        manifests.tls_secret(SETTINGS, "c", "k", "b"),
        manifests.deployment(SETTINGS),
        manifests.service(SETTINGS),
        manifests.pod_disruption_budget(SETTINGS),
        manifests.mutating_webhook_configuration(SETTINGS, "b"),
        manifests.validating_webhook_configuration(SETTINGS, "b"),
    ]
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa", obj["kind"]
    for obj in objects[3:5] + objects[-2:]:
        assert obj["metadata"]["labels"][manifests.INSTALL_NAMESPACE_LABEL] == "gmsa-system", obj["kind"]


def test_ca_secret_keeps_the_previous_ca_only_when_given():
    assert set(manifests.ca_secret(SETTINGS, "c", "k", None)["data"]) == {"tls.crt", "tls.key"}
    assert base64.b64decode(manifests.ca_secret(SETTINGS, "c", "k", "old")["data"]["previous.crt"]) == b"old"
