"""Unit tests for gmsa_webhook: option validation, image references, certificate planning."""

import base64
import datetime

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _webhook_manifests as manifests
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_webhook

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)
TLS = {"mode": "self_signed", "validity_days": 365, "renew_before_days": 30, "ca_validity_days": 3650}
SETTINGS = manifests.WebhookSettings()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "Gmsa_Webhook"}, "name: 'Gmsa_Webhook' is not a lowercase RFC 1123 label"),
        ({"name": "1webhook"}, "name: '1webhook' must start with a letter"),
        ({"namespace": "a" * 64}, "namespace: "),
        ({"excluded_namespaces": ["kube-system", "Bad"]}, "excluded_namespaces[1]: "),
        ({"timeout_seconds": 31}, "timeout_seconds: must be between 1 and 30"),
        ({"replicas": 0}, "replicas: must be at least 1"),
        ({"excluded_namespaces": ["default"]}, "probe_namespace: 'default' is skipped by the webhooks"),
        ({"tls": {"validity_days": 0}}, "tls.validity_days: must be at least 1"),
        ({"node_selector": {"pool": 1}}, "node_selector.pool: must be a string"),
        ({"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "efect": "NoSchedule"}]}, "tolerations[1]: unknown field(s) efect"),
        ({"tolerations": [{"key": "a", "operator": "In"}]}, "tolerations[0].operator: must be one of Exists, Equal"),
        ({"tolerations": [{"key": "a", "effect": "NoScheduling"}]}, "tolerations[0].effect: must be one of NoSchedule"),
        ({"resources": {"request": {"cpu": "1"}}}, "resources.request: resources take requests and limits"),
        ({"qps": 0}, "qps: must be greater than 0"),
        ({"burst": 0}, "burst: must be at least 1"),
        ({"affinity": {"podAntiAfinity": {}}}, "affinity: unknown field(s) podAntiAfinity"),
        ({"priority_class_name": "Critical"}, "priority_class_name: 'Critical' is not a lowercase RFC 1123 subdomain"),
        ({"tls": {"mode": "provided", "secret_name": "serving"}}, "missing: ca_bundle found in tls"),
        ({"tls": {"mode": "provided", "secret_name": "serving", "ca_bundle": "garbage"}}, "tls.ca_bundle: must be PEM certificates"),
        ({"tls": {"mode": "provided", "secret_name": "Serving_1", "ca_bundle": "x"}}, "tls.secret_name: 'Serving_1' is not"),
        ({"tls": {"secret_name": "serving"}}, "tls.secret_name: applies only to tls.mode=provided"),
        ({"tls": {"mode": "cert_manager", "validity_days": 30, "renew_before_days": 30}}, "tls.renew_before_days: must be smaller than tls.validity_days"),
        ({"adopt": True, "wait": False}, "adopt: needs wait=true"),
        ({"adopt": True, "tls": {"mode": "cert_manager"}}, "adopt: works with tls.mode self_signed or provided"),
        ({"opt_out_policy": {"allowed_groups": []}}, "opt_out_policy.allowed_groups: must name at least one group"),
        ({"opt_out_policy": {"allowed_groups": ["admins", "bad\ngroup"]}}, "opt_out_policy.allowed_groups[1]: "),
        ({"opt_out_policy": {"name": "Opt_Out"}}, "opt_out_policy.name: 'Opt_Out' is not"),
    ],
)
def test_invalid_options_fail_before_the_cluster_is_touched(args, message, run_offline):
    result = run_offline(gmsa_webhook, args)
    assert result["failed"]
    assert message in result["msg"]


@pytest.mark.parametrize(
    ("image", "registry", "expected"),
    [
        (manifests.DEFAULT_IMAGE, None, manifests.DEFAULT_IMAGE),
        (manifests.DEFAULT_IMAGE, "registry.example.com/mirror/", "registry.example.com/mirror/gmsa-webhook/k8s-gmsa-webhook:v0.13.0"),
        ("localhost:5000/gmsa:dev", "mirror.local", "mirror.local/gmsa:dev"),
        ("sigwindowstools/k8s-gmsa-webhook:v0.13.0", "mirror.local", "mirror.local/sigwindowstools/k8s-gmsa-webhook:v0.13.0"),
    ],
)
def test_image_registry_override(image, registry, expected):
    assert gmsa_webhook.image_reference(image, registry) == expected


def _secret(pair, extra=None):
    data = {"tls.crt": base64.b64encode(pair.cert.encode()).decode(), "tls.key": base64.b64encode(pair.key.encode()).decode()}
    data.update(extra or {})
    return {"data": data}


def test_first_run_makes_a_ca_and_a_server_certificate():
    ca, previous, server, reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    assert previous is None and reason == "no server certificate stored yet"
    assert _tls.server_renewal_reason(server, ca, _tls.service_dns_names("gmsa-webhook", "gmsa-webhook"), NOW, datetime.timedelta(days=30)) is None


def test_rerun_reuses_the_stored_material():
    ca, _previous, server, _reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    again = gmsa_webhook.plan_certificates(SETTINGS, TLS, _secret(ca), _secret(server), NOW + datetime.timedelta(days=100))
    assert again == (ca, None, server, None)


def test_server_certificate_in_its_window_is_reissued_by_the_same_ca():
    ca, _previous, server, _reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    new_ca, previous, new_server, reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, _secret(ca), _secret(server), NOW + datetime.timedelta(days=340))
    assert new_ca == ca and previous is None
    assert new_server != server and "renewal window" in reason


def test_ca_in_its_window_is_replaced_and_stays_trusted_until_it_expires():
    ca, _previous, server, _reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    later = NOW + datetime.timedelta(days=3640)
    new_ca, previous, new_server, reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, _secret(ca), _secret(server), later)
    assert new_ca != ca and previous == ca.cert
    assert "not issued by the current CA" in reason
    # Next run: the replaced CA is still carried while valid, and dropped once expired.
    stored = _secret(new_ca, {"previous.crt": base64.b64encode(previous.encode()).decode()})
    assert gmsa_webhook.plan_certificates(SETTINGS, TLS, stored, _secret(new_server), later)[1] == ca.cert
    assert gmsa_webhook.plan_certificates(SETTINGS, TLS, stored, _secret(new_server), later + datetime.timedelta(days=30))[1] is None


def test_new_options_reach_the_settings():
    params = {spec: options.get("default") for spec, options in gmsa_webhook.ARGUMENT_SPEC.items()}
    params["tls"] = dict(TLS, mode="cert_manager", private_key_rotation_policy="Never", secret_name=None, ca_bundle=None)
    params.update(qps=12.5, burst=25, priority_class_name="system-cluster-critical", affinity={"podAffinity": {}}, view_aggregation=True)
    settings = gmsa_webhook.settings_from(params)
    assert (settings.qps, settings.burst, settings.priority_class_name, settings.affinity, settings.view_aggregation) == (
        12.5, 25, "system-cluster-critical", {"podAffinity": {}}, True,
    )
    assert (settings.certificate_duration, settings.certificate_renew_before, settings.ca_duration) == ("8760h", "720h", "87600h")
    assert settings.private_key_rotation_policy == "Never" and settings.cert_manager
    # The chart's defaults, not the binary's.
    assert (gmsa_webhook.ARGUMENT_SPEC["qps"]["default"], gmsa_webhook.ARGUMENT_SPEC["burst"]["default"]) == (30.0, 50)


class LiveObjects:
    """Stands in for the Reconciler's lookups: the live objects by (kind, name)."""

    def __init__(self, *objects):
        self.objects = {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}

    def live(self, obj):
        return self.objects.get((obj["kind"], obj["metadata"]["name"]))


def _foreign(kind, name, namespace=None, labels=None, annotations=None):
    metadata = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if namespace:
        metadata["namespace"] = namespace
    return {"kind": kind, "metadata": metadata}


def test_objects_of_another_install_are_named_with_who_made_them():
    live = LiveObjects(
        # upstream's deploy script (gmsa-webhook.yml.tpl): no labels at all
        _foreign("Deployment", "gmsa-webhook", "gmsa-webhook"),
        # the chart: a chart label; installed by helm, also Helm's label and release annotations
        _foreign("Service", "gmsa-webhook", "gmsa-webhook", {"chart": "gmsa-0.12.1"}),
        _foreign(
            "MutatingWebhookConfiguration", "gmsa-webhook", labels={"app.kubernetes.io/managed-by": "Helm", "chart": "gmsa-0.12.1"},
            annotations={"meta.helm.sh/release-name": "gmsa-webhook", "meta.helm.sh/release-namespace": "gmsa-webhook"},
        ),
        # this collection, installed in another namespace
        manifests.cluster_role(manifests.WebhookSettings(namespace="elsewhere")),
        # this install's own object is no conflict
        manifests.cluster_role_binding(SETTINGS),
    )
    foreign = gmsa_webhook.foreign_objects(live, SETTINGS)
    assert foreign == {
        "Deployment gmsa-webhook/gmsa-webhook": (
            "not this collection (no wincontainers.gmsa label: upstream's deploy-gmsa-webhook.sh, Install-AksHciGMSAWebhook or kubectl)"
        ),
        "Service gmsa-webhook/gmsa-webhook": "the windows-gmsa Helm chart (gmsa-0.12.1)",
        "MutatingWebhookConfiguration gmsa-webhook": "Helm release gmsa-webhook/gmsa-webhook",
        "ClusterRole gmsa-webhook": "the install of this collection in namespace elsewhere",
    }


def test_a_provided_secret_is_never_counted_as_foreign_and_cert_manager_secrets_are_cert_managers():
    secret = _foreign("Secret", "serving", "gmsa-webhook")
    assert gmsa_webhook.foreign_objects(LiveObjects(secret), manifests.WebhookSettings(provided_secret="serving")) == {}
    planned = {gmsa_webhook.object_ref(obj) for obj in gmsa_webhook.planned_objects(manifests.WebhookSettings(cert_manager=True))}
    assert "Certificate gmsa-webhook/gmsa-webhook" in planned and "Secret gmsa-webhook/gmsa-webhook-tls" not in planned


class HandoverCluster:
    """A cluster holding another install's objects: records writes, reports Deployments Available at once and
    the Service's endpoints as the pods its selector picks (their pods, or ours once it selects ours)."""

    def __init__(self, objects):
        self.objects = {(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]): obj for obj in objects}
        self.writes = []

    def get(self, kind, name, namespace=None):
        obj = self.objects.get((kind, namespace, name))
        if obj is not None and kind == "Deployment":
            replicas = obj["spec"].get("replicas", 1)
            obj = dict(obj, status={"observedGeneration": 1, "updatedReplicas": replicas, "readyReplicas": replicas,
                                    "conditions": [{"type": "Available", "status": "True"}]})
            obj["metadata"] = dict(obj["metadata"], generation=1)
        return obj

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
        if kind == "EndpointSlice":
            selector = self.objects[("Service", namespace, label_selector.split("=")[1])]["spec"]["selector"]
            pods = [deployment["metadata"]["name"] + "-pod" for (k, _ns, _n), deployment in self.objects.items()
                    if k == "Deployment" and selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()]
            return [{"endpoints": [{"targetRef": {"name": pod}, "conditions": {"ready": True}} for pod in pods]}]
        if kind == "Pod":
            return [{"metadata": dict(deployment["spec"]["template"]["metadata"], name=deployment["metadata"]["name"] + "-pod")}
                    for (k, _ns, _n), deployment in self.objects.items() if k == "Deployment"]
        return [obj for (k, _ns, _n), obj in self.objects.items() if k == kind]

    def _write(self, verb, obj):
        self.writes.append((verb, obj["kind"], obj["metadata"]["name"]))
        stored = dict(obj, metadata=dict(obj["metadata"], resourceVersion="2"))
        self.objects[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])] = stored
        return stored

    def apply(self, obj, dry_run=False):
        return self._write("apply", obj)

    def replace(self, obj, dry_run=False):
        assert obj["metadata"]["resourceVersion"] == "1", "a replace names the version it replaces"
        return self._write("replace", obj)

    def delete(self, obj, dry_run=False):
        self.writes.append(("delete", obj["kind"], obj["metadata"]["name"]))
        del self.objects[(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])]
        return True


class FakeModule:
    def __init__(self, **params):
        self.params = dict({"wait_timeout": 5, "adopt": True, "wait": True}, **params)
        self.check_mode = False
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


def _theirs(kind, name, namespace=None, **fields):
    metadata = {"name": name, "resourceVersion": "1"}
    if namespace:
        metadata["namespace"] = namespace
    return dict({"kind": kind, "metadata": metadata}, **fields)


def test_hand_over_keeps_a_serving_webhook_at_every_step():
    ns = name = "gmsa-webhook"
    their_ca = _tls.new_ca("their CA", NOW, datetime.timedelta(days=30))
    hook = {"clientConfig": {"caBundle": base64.b64encode(their_ca.cert.encode()).decode()}}
    their_pods = {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
                  "spec": {"volumes": [{"name": "tls", "secret": {"secretName": name}}]}}}
    cluster = HandoverCluster([
        _theirs("Deployment", name, ns, spec=their_pods),
        _theirs("Service", name, ns, spec={"selector": {"app": name}}),
        _theirs("MutatingWebhookConfiguration", name, webhooks=[hook]),
        _theirs("ValidatingWebhookConfiguration", name, webhooks=[hook]),
        _theirs("ClusterRoleBinding", "gmsa-webhook-gmsa-webhook-binding-to-rbac-role", roleRef={"name": "gmsa-webhook-gmsa-webhook-rbac-role"},
                subjects=[{"kind": "ServiceAccount", "name": name, "namespace": ns}]),
    ])
    reconciler = gmsa_webhook.Reconciler(cluster, check_mode=False)
    foreign = gmsa_webhook.foreign_objects(reconciler, SETTINGS)
    assert set(foreign) == {"Deployment gmsa-webhook/gmsa-webhook", "Service gmsa-webhook/gmsa-webhook",
                            "MutatingWebhookConfiguration gmsa-webhook", "ValidatingWebhookConfiguration gmsa-webhook"}
    module = FakeModule()
    leftovers = gmsa_webhook.hand_over(module, cluster, reconciler, SETTINGS, foreign, "ab12", "OUR CA\n")

    assert cluster.writes == [
        # 1. the API server trusts both CAs while their pods still serve
        ("replace", "MutatingWebhookConfiguration", name),
        ("replace", "ValidatingWebhookConfiguration", name),
        # 2. our pods beside theirs, 3. then the Service moves to them
        ("apply", "Deployment", name + "-handover"),
        ("replace", "Service", name),
        # 4. only then their Deployment goes, and ours takes its name
        ("delete", "Deployment", name),
        ("apply", "Deployment", name),
        # 5. the stand-in goes last, while ours serves
        ("delete", "Deployment", name + "-handover"),
    ]
    bundle = base64.b64decode(cluster.objects[("ValidatingWebhookConfiguration", None, name)]["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    assert bundle == "OUR CA\n" + their_ca.cert
    service = cluster.objects[("Service", ns, name)]
    assert service["spec"]["selector"] == manifests.service(SETTINGS)["spec"]["selector"], "replaced, not merged: their app key is gone"
    assert leftovers == [
        "Secret gmsa-webhook/gmsa-webhook",
        "ClusterRoleBinding gmsa-webhook-gmsa-webhook-binding-to-rbac-role (ClusterRole gmsa-webhook-gmsa-webhook-rbac-role)",
    ]
    assert not foreign, "every adopted object is now this install's"


def test_adopt_refuses_what_it_cannot_hand_over():
    live = LiveObjects(
        manifests.cluster_role(manifests.WebhookSettings(namespace="elsewhere")),
        _foreign("Secret", "gmsa-webhook-tls", "gmsa-webhook"),
    )
    foreign = gmsa_webhook.foreign_objects(live, SETTINGS)
    with pytest.raises(gmsa_webhook.Conflict, match=r"adopt=true cannot migrate ClusterRole gmsa-webhook \(made by the install of this collection in "
                       r"namespace elsewhere\); Secret gmsa-webhook/gmsa-webhook-tls \(made by not this collection"):
        gmsa_webhook.check_adoptable(live, SETTINGS, foreign)


def test_cert_manager_s_current_certificate_is_read_on_each_run():
    _ca, _previous, server, _reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    secret = dict(_secret(server), kind="Secret", metadata={"name": "gmsa-webhook-tls", "namespace": "gmsa-webhook"})
    settings = manifests.WebhookSettings(cert_manager=True)
    module = FakeModule(wait=False)
    served = gmsa_webhook.cert_manager_certificate(module, HandoverCluster([secret]), settings)
    assert served == server.cert and module.warnings == []
    # Not issued yet: no fingerprint, and the user is told when the pods will get one.
    assert gmsa_webhook.cert_manager_certificate(module, HandoverCluster([]), settings) is None
    assert "cert-manager has not yet written Secret gmsa-webhook/gmsa-webhook-tls" in module.warnings[0]


def test_adopting_reads_again_when_a_controller_wrote_the_object_meanwhile():
    class StatusWriter(HandoverCluster):
        """The disruption controller updates the PodDisruptionBudget's status between the read and the first replace."""

        conflicts = 1

        def replace(self, obj, dry_run=False):
            if self.conflicts:
                self.conflicts -= 1
                self.objects[("PodDisruptionBudget", "gmsa-webhook", "gmsa-webhook")]["metadata"]["resourceVersion"] = "1"
                raise gmsa_webhook.ApiError("replacing: the object has been modified", 409)
            return super().replace(obj, dry_run)

    theirs = _theirs("PodDisruptionBudget", "gmsa-webhook", "gmsa-webhook", spec={"selector": {"matchLabels": {"app": "gmsa-webhook"}}})
    theirs["metadata"]["resourceVersion"] = "0"
    cluster = StatusWriter([theirs])
    reconciler = gmsa_webhook.Reconciler(cluster, check_mode=False)
    reconciler.live(manifests.pod_disruption_budget(SETTINGS))  # read at the start of the run, version 0
    reconciler.adopt(manifests.pod_disruption_budget(SETTINGS))
    assert cluster.writes == [("replace", "PodDisruptionBudget", "gmsa-webhook")]
    assert reconciler.summary() == [{"object": "PodDisruptionBudget gmsa-webhook/gmsa-webhook", "action": "adopted"}]


def test_a_deleted_ca_secret_keeps_the_ca_the_configurations_trust_until_it_expires():
    ca, _previous, server, _reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW)
    # The CA Secret is gone; the configurations still trust the CA that signed the running pods' certificate.
    new_ca, previous, new_server, reason = gmsa_webhook.plan_certificates(SETTINGS, TLS, None, _secret(server), NOW, trusted=ca.cert)
    assert new_ca != ca and previous == ca.cert
    assert new_server != server and reason == "the server certificate was not issued by the current CA"
    assert gmsa_webhook.plan_certificates(SETTINGS, TLS, None, None, NOW + datetime.timedelta(days=3651), trusted=ca.cert)[1] is None
