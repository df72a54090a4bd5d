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
