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
