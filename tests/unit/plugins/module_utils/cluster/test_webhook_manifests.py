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


def test_deployment_runs_non_root_on_linux_and_reads_its_certificate_at_start():
    settings = manifests.WebhookSettings(
        namespace="gmsa-system", node_selector={"pool": "system"}, tolerations=({"key": "dedicated", "operator": "Exists"},), random_hostname=True
    )
    spec = manifests.deployment(settings, "ab12")["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert pod["nodeSelector"] == {"pool": "system", "kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    # Renewals roll the pods instead: --cert-reload misses every renewal after the first (upstream issue 176).
    assert "args" not in container
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TLS_CRT"] == "/tls/tls.crt" and env["TLS_KEY"] == "/tls/tls.key"
    assert env["HTTPS_PORT"] == str(manifests.CONTAINER_PORT) and manifests.CONTAINER_PORT > 1024
    assert env["RANDOM_HOSTNAME"] == "true"
    # The chart's client defaults (values.yaml qps 30, burst 50), not the binary's 5/10.
    assert env["QPS"] == "30" and env["BURST"] == "50"
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "gmsa-webhook-tls"}}]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert "priorityClassName" not in pod
    (spread,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_a_new_certificate_rolls_the_pods_one_at_a_time_keeping_one_ready():
    first, renewed = (manifests.deployment(SETTINGS, fingerprint)["spec"] for fingerprint in ("aa", "bb"))
    assert first["template"]["metadata"]["annotations"] == {manifests.CERTIFICATE_ANNOTATION: "aa"}
    assert first["template"] != renewed["template"]
    assert first["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert first["replicas"] >= 2
    probe = first["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"scheme": "HTTPS", "path": "/health", "port": manifests.CONTAINER_PORT}
    # Not issued yet (cert-manager): no annotation rather than an empty one.
    assert "annotations" not in manifests.deployment(SETTINGS, None)["spec"]["template"]["metadata"]


def test_pod_options_pass_through():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    settings = manifests.WebhookSettings(qps=12.5, burst=20, affinity=affinity, priority_class_name="system-cluster-critical")
    pod = manifests.deployment(settings, None)["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in pod["containers"][0]["env"]}
    assert (env["QPS"], env["BURST"]) == ("12.5", "20")
    assert pod["affinity"] == affinity and pod["priorityClassName"] == "system-cluster-critical"


def test_provided_secret_is_mounted():
    settings = manifests.WebhookSettings(provided_secret="my-serving")
    pod = manifests.deployment(settings, "aa")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "my-serving"}}]


def test_view_aggregation_role_reads_credspecs_only():
    role = manifests.view_cluster_role(SETTINGS)
    assert role["metadata"]["name"] == "gmsa-webhook-viewer"
    assert role["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert role["rules"] == [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["get", "list", "watch"]}]


@pytest.mark.parametrize(
    ("live_labels", "created"),
    [
        (None, False),
        ({}, False),
        ({"kubernetes.io/metadata.name": "kube-system"}, False),
        ({"app.kubernetes.io/managed-by": "wincontainers.gmsa", manifests.INSTALL_NAMESPACE_LABEL: "gmsa-system"}, True),
        ({"app.kubernetes.io/managed-by": "wincontainers.gmsa", manifests.INSTALL_NAMESPACE_LABEL: "other"}, False),
    ],
)
def test_a_namespace_counts_as_created_only_with_this_installs_labels(live_labels, created):
    live = None if live_labels is None else {"metadata": {"name": "gmsa-system", "labels": live_labels}}
    assert manifests.created_namespace(live, SETTINGS) is created
    # What the module creates passes its own test.
    assert manifests.created_namespace(manifests.namespace(SETTINGS), SETTINGS)


def test_service_and_pdb_select_the_deployment_pods():
    pod_labels = manifests.deployment(SETTINGS, None)["spec"]["template"]["metadata"]["labels"]
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
        # Upstream's deploy script labels opted-out namespaces gmsa-webhook=disabled (gmsa-webhook.yml.tpl).
        {"key": "gmsa-webhook", "operator": "NotIn", "values": ["disabled"]},
    ]


def test_cert_manager_mode_injects_the_ca_instead_of_a_bundle():
    settings = manifests.WebhookSettings(namespace="gmsa-system", cert_manager=True)
    configuration = manifests.validating_webhook_configuration(settings, None)
    assert configuration["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "gmsa-system/gmsa-webhook"}
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    objects = {(obj["kind"], obj["metadata"]["name"]): obj for obj in manifests.cert_manager_objects(settings, ["a.svc"])}
    serving = objects[("Certificate", "gmsa-webhook")]["spec"]
    assert serving["secretName"] == settings.tls_secret and serving["dnsNames"] == ["a.svc"]
    assert (serving["duration"], serving["renewBefore"], serving["privateKey"]) == ("8760h", "720h", {"rotationPolicy": "Always"})
    assert objects[("Certificate", "gmsa-webhook-ca")]["spec"]["isCA"]
    # The Secrets cert-manager writes carry the install's labels, so uninstall recognises them.
    for certificate in (serving, objects[("Certificate", "gmsa-webhook-ca")]["spec"]):
        assert certificate["secretTemplate"]["labels"] == manifests.labels(settings)


def test_every_object_is_labelled_as_ours_and_cluster_scoped_ones_name_their_install():
    objects = [
        manifests.crd(),
        manifests.namespace(SETTINGS),
        manifests.service_account(SETTINGS),
        manifests.cluster_role(SETTINGS),
        manifests.cluster_role_binding(SETTINGS),
        manifests.ca_secret(SETTINGS, "c", "k", None),
        manifests.tls_secret(SETTINGS, "c", "k", "b"),
        manifests.deployment(SETTINGS, None),
        manifests.service(SETTINGS),
        manifests.pod_disruption_budget(SETTINGS),
        manifests.mutating_webhook_configuration(SETTINGS, "b"),
        manifests.validating_webhook_configuration(SETTINGS, "b"),
        manifests.view_cluster_role(SETTINGS),
    ]
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa", obj["kind"]
    for obj in objects[3:5] + objects[-3:]:
        assert obj["metadata"]["labels"][manifests.INSTALL_NAMESPACE_LABEL] == "gmsa-system", obj["kind"]


def test_ca_secret_keeps_the_previous_ca_only_when_given():
    assert set(manifests.ca_secret(SETTINGS, "c", "k", None)["data"]) == {"tls.crt", "tls.key"}
    assert base64.b64decode(manifests.ca_secret(SETTINGS, "c", "k", "old")["data"]["previous.crt"]) == b"old"


def test_handover_pods_are_selected_by_the_service_but_not_by_the_final_deployment_s_own_selector():
    handover = manifests.handover_deployment(SETTINGS, "aa")
    final = manifests.deployment(SETTINGS, "aa")
    assert handover["metadata"]["name"] == "gmsa-webhook-handover"
    assert manifests.service(SETTINGS)["spec"]["selector"].items() <= handover["spec"]["template"]["metadata"]["labels"].items()
    # The stand-in's selector must not match the final Deployment's pods, or the two would fight over them.
    assert not set(handover["spec"]["selector"]["matchLabels"].items()).issubset(final["spec"]["template"]["metadata"]["labels"].items())
    assert handover["spec"]["template"]["spec"] == final["spec"]["template"]["spec"]
    assert final["spec"]["selector"] == manifests.deployment(SETTINGS, "aa")["spec"]["selector"], "the final Deployment is not changed by it"


def test_a_stopping_pod_keeps_serving_for_its_pre_stop_sleep_where_the_cluster_has_it():
    container = manifests.deployment(manifests.WebhookSettings(pre_stop_seconds=5), "aa")["spec"]["template"]["spec"]["containers"][0]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    # Before Kubernetes 1.30 the sleep action does not exist: nothing the API server would refuse.
    assert "lifecycle" not in manifests.deployment(SETTINGS, "aa")["spec"]["template"]["spec"]["containers"][0]
