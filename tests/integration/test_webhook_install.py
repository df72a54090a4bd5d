"""gmsa_webhook on a cluster that already has things in it: namespaces it did not create, installs made by
upstream's deploy script or Helm chart, a namespace still terminating from an uninstall.

Everything runs against the lab's real API server through ansible-playbook. The installs here register
admission with failurePolicy Ignore and exclude every namespace the lab had, so while they exist no other
suite's pod can be refused by them (the lab is shared).

    python -m pytest tests/integration/test_webhook_install.py -v      # from the repository root, as root
"""

import base64
import datetime
import json
import os
import re
import string
import subprocess
import sys
import threading
import time

import pytest
import yaml

from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd
from tests.integration.support import kubectl, kubectl_json, run_play
from tests.lab import build, kube
from tests.lab import webhook as lab_kubelet

pytest_plugins = ("tests.lab.pytest_kube",)

PREFIX = "itest-wi-"
# The objects an install from upstream's deploy script or chart has under its NAME, which ours would take.
TAKEN_OVER_KINDS = ("Deployment", "Service", "ServiceAccount", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def upstream_checkout():
    """windows-gmsa at the pinned v0.13.0 commit, as the lab's build fetched it (from $WGMSA_WINDOWS_GMSA_SOURCE)."""
    tool = next(tool for tool in build.TOOLS if tool.name == "webhook")
    return build.fetch_source(tool.checkout, log=lambda *_: None)


@pytest.fixture(name="lab", scope="module")
def fixture_lab(kube_lab):
    # A namespace of ours left by an interrupted run is not excluded: these tests create and intercept them.
    names = (item["metadata"]["name"] for item in kubectl_json(kube_lab, "get", "namespaces")["items"])
    existing = sorted(name for name in names if not name.startswith(PREFIX))
    # The CRD is shared with the other suites: apply it when missing and leave it.
    kubectl(kube_lab, "apply", "--server-side", "--field-manager", "itest", "-f", "-", stdin=json.dumps(crd()))
    yield dict(kube_lab, existing=existing)
    for item in kubectl_json(kube_lab, "get", "namespaces")["items"]:
        if item["metadata"]["name"].startswith(PREFIX):
            subprocess.run([kube_lab["binaries"]["kubectl"], "--kubeconfig", kube_lab["kubeconfig"], "delete", "namespace", item["metadata"]["name"],
                            "--ignore-not-found", "--wait=false"], capture_output=True, check=False)


def harmless(lab, name, namespace, **options):
    """gmsa_webhook options for an install that cannot refuse another suite's pod: Ignore, and every namespace the lab had excluded."""
    return dict(
        {"name": name, "namespace": namespace, "wait": False, "failure_policy": "Ignore", "timeout_seconds": 1,
         "excluded_namespaces": lab["existing"],
         "probe_namespace": PREFIX + "probe"},
        **options,
    )


def gmsa_webhook(options, **overrides):
    return {"wincontainers.gmsa.gmsa_webhook": dict(options, **overrides)}


def metadata_of(lab, kind, name, namespace=None):
    where = ("-n", namespace) if namespace else ()
    try:
        return kubectl_json(lab, "get", kind, name, *where)["metadata"]
    except kube.LabError:
        return None


def versions(lab, refs):
    """{(kind, namespace, name): the object without its status, or None}: what a write by the module would change.

    Status and its bookkeeping (resourceVersion, managedFields) are left out: controllers update a
    PodDisruptionBudget's or Deployment's status on their own.
    """
    objects = {}
    for kind, namespace, name in refs:
        try:
            obj = kubectl_json(lab, "get", kind, name, *(("-n", namespace) if namespace else ()))
        except kube.LabError:
            objects[(kind, namespace, name)] = None
            continue
        obj.pop("status", None)
        for bookkeeping in ("resourceVersion", "managedFields"):
            obj["metadata"].pop(bookkeeping, None)
        objects[(kind, namespace, name)] = obj
    return objects


def wait_gone(lab, kind, name, timeout=60):
    deadline = time.monotonic() + timeout
    while metadata_of(lab, kind, name) is not None:
        assert time.monotonic() < deadline, "%s %s still there after %s s" % (kind, name, timeout)
        time.sleep(0.5)


# --- namespaces the collection did not create ----------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["kube-system", PREFIX + "users"])
def test_an_existing_namespace_is_neither_labelled_nor_deleted(lab, namespace):
    if namespace != "kube-system":
        kubectl(lab, "create", "namespace", namespace)
        kubectl(lab, "label", "namespace", namespace, "team=windows")
    before = metadata_of(lab, "namespace", namespace)
    options = harmless(lab, PREFIX + "in-existing", namespace)
    try:
        play = run_play(lab, [gmsa_webhook(options)])
        assert play.rc == 0, play.output
        assert not [entry for entry in play.result["objects"] if entry["object"].startswith("Namespace ")]
        after = metadata_of(lab, "namespace", namespace)
        # Not relabelled: no Pod Security level, no opt-out, no ownership label.
        assert after.get("labels") == before.get("labels") and after.get("annotations") == before.get("annotations")
        kubectl(lab, "get", "deployment", "-n", namespace, PREFIX + "in-existing")
        # The webhooks skip it by name instead.
        selector = kubectl_json(lab, "get", "validatingwebhookconfiguration", PREFIX + "in-existing")["webhooks"][0]["namespaceSelector"]
        assert namespace in selector["matchExpressions"][0]["values"]
    finally:
        removal = run_play(lab, [gmsa_webhook(options, state="absent")])
    assert removal.rc == 0, removal.output
    assert {"object": "Namespace " + namespace, "action": "kept"} in removal.result["objects"]
    after = metadata_of(lab, "namespace", namespace)
    assert after is not None and after["uid"] == before["uid"] and after.get("labels") == before.get("labels")
    assert "deletionTimestamp" not in after
    assert metadata_of(lab, "deployment", PREFIX + "in-existing", namespace) is None
    assert metadata_of(lab, "validatingwebhookconfiguration", PREFIX + "in-existing") is None
    if namespace != "kube-system":
        kubectl(lab, "delete", "namespace", namespace, "--wait=false")


# --- uninstall then install ------------------------------------------------------------------------------------


def test_uninstall_followed_at_once_by_install_works(lab):
    """As a new user tries it: state=absent, then state=present, in one play. It used to fail as 'forbidden by RBAC'."""
    options = harmless(lab, PREFIX + "again", PREFIX + "again")
    assert run_play(lab, [gmsa_webhook(options)]).rc == 0
    play = run_play(lab, [gmsa_webhook(options, state="absent", wait=True), gmsa_webhook(options)])
    try:
        assert play.rc == 0, play.output
        removal, install = play.results
        assert {"object": "Namespace " + PREFIX + "again", "action": "deleted"} in removal["objects"]
        assert {"object": "Namespace " + PREFIX + "again", "action": "created"} in install["objects"]
        assert metadata_of(lab, "namespace", PREFIX + "again")["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa"
    finally:
        assert run_play(lab, [gmsa_webhook(options, state="absent", wait=True)]).rc == 0
    # The uninstall waited: the namespace is gone, not terminating.
    assert metadata_of(lab, "namespace", PREFIX + "again") is None


def _hold_namespace(lab, namespace):
    """A ConfigMap with a finalizer of ours: the namespace stays Terminating until it is released."""
    held = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hold", "namespace": namespace, "finalizers": ["itest.wincontainers.gmsa/hold"]}}
    kubectl(lab, "create", "-f", "-", stdin=json.dumps(held))


def _release_namespace(lab, namespace):
    kubectl(lab, "patch", "configmap", "hold", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_install_waits_for_its_namespace_to_finish_terminating(lab):
    namespace = PREFIX + "terminating"
    options = harmless(lab, namespace, namespace)
    assert run_play(lab, [gmsa_webhook(options)]).rc == 0
    _hold_namespace(lab, namespace)
    # wait=false: the uninstall returns while the namespace still terminates.
    assert run_play(lab, [gmsa_webhook(options, state="absent")]).rc == 0
    assert metadata_of(lab, "namespace", namespace)["deletionTimestamp"]
    try:
        # Held for good: the install says what it waited for, and changed nothing.
        play = run_play(lab, [gmsa_webhook(options, wait_timeout=3)])
        assert play.rc != 0
        assert "namespace %s to finish terminating before the webhook is installed in it again not ready after 3 s: " % namespace in play.result["msg"]
        assert "is Terminating" in play.result["msg"] and "RBAC" not in play.result["msg"]
        assert play.result["objects"] == []
        # Released while the install waits: it proceeds once the namespace is gone.
        threading.Timer(3, _release_namespace, (lab, namespace)).start()
        started = time.monotonic()
        play = run_play(lab, [gmsa_webhook(options, wait_timeout=60)])
        assert play.rc == 0, play.output
        assert time.monotonic() - started >= 3
        assert {"object": "Namespace " + namespace, "action": "created"} in play.result["objects"]
    finally:
        if metadata_of(lab, "configmap", "hold", namespace):
            _release_namespace(lab, namespace)
        assert run_play(lab, [gmsa_webhook(options, state="absent", wait=True)]).rc == 0


def test_a_terminating_namespace_is_not_reported_as_rbac(lab):
    """The NamespaceLifecycle plugin's 403 through the shared client, met by gmsa_credspec writing a RoleBinding."""
    namespace = PREFIX + "leaving"
    kubectl(lab, "create", "namespace", namespace)
    _hold_namespace(lab, namespace)
    kubectl(lab, "delete", "namespace", namespace, "--wait=false")
    domain = {"dns_name": "itest.example", "netbios_name": "ITEST", "sid": "S-1-5-21-1004336348-1177238915-682003330",
              "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e"}
    credspec = {"account_name": "ItestWiLeaving", "service_accounts": [{"name": "app", "namespace": namespace}]}
    try:
        play = run_play(lab, [{"wincontainers.gmsa.gmsa_credspec": {"domain": domain, "credspecs": [credspec]}}])
        assert play.rc != 0
        assert "refused because the namespace is being deleted" in play.result["msg"]
        assert "is being terminated" in play.result["msg"] and "forbidden by RBAC" not in play.result["msg"]
    finally:
        _release_namespace(lab, namespace)
        run_play(lab, [{"wincontainers.gmsa.gmsa_credspec": {"domain": domain, "credspecs": [credspec], "state": "absent"}}])


# --- installs made by someone else -----------------------------------------------------------------------------


def _serving_material(name, namespace):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = _tls.new_ca("itest upstream CA", now, datetime.timedelta(days=30))
    return ca, _tls.new_server_cert(ca, _tls.service_dns_names(name, namespace), now, datetime.timedelta(days=30))


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _defused(documents, name):
    """Upstream's objects as rendered, but unable to refuse a pod of the shared lab: failurePolicy Ignore, and a
    namespaceSelector no namespace matches. Names, labels and annotations (what the module judges) are untouched."""
    for document in documents:
        if document["kind"].endswith("WebhookConfiguration"):
            for hook in document["webhooks"]:
                hook["failurePolicy"] = "Ignore"
                hook.setdefault("namespaceSelector", {}).setdefault("matchExpressions", []).append(
                    {"key": "itest.wincontainers.gmsa/intercept", "operator": "In", "values": [name]}
                )
    return documents


def render_deploy_script_install(name, namespace):
    """admission-webhook/deploy/gmsa-webhook.yml.tpl as deploy-gmsa-webhook.sh renders it (envsubst of its ${VARS})."""
    with open(os.path.join(upstream_checkout(), "admission-webhook/deploy/gmsa-webhook.yml.tpl"), encoding="utf-8") as template:
        text = template.read()
    ca, server = _serving_material(name, namespace)
    text = string.Template(text).substitute(
        NAME=name, NAMESPACE=namespace, RBAC_ROLE_NAME="%s-%s-rbac-role" % (namespace, name),
        IMAGE_NAME="registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0", TOLERATIONS="",
        TLS_PRIVATE_KEY=_b64(server.key), TLS_CERTIFICATE=_b64(server.cert), CA_BUNDLE=_b64(ca.cert),
    )
    return _defused([document for document in yaml.safe_load_all(text) if document], name)


def helm_binary():
    """helm built from tests/lab/go/helm (helm template only: it never talks to a cluster here)."""
    return build.ensure_tool(build.HELM)["helm"]


def render_chart_install(name, namespace):
    """charts/gmsa rendered by helm template with certificates given as the chart documents it (no cert-manager):
    the caBundle as a value, and the Secret certificates.secretName (ca.crt, tls.crt, tls.key) made by the user."""
    ca, server = _serving_material(name, namespace)
    command = [helm_binary(), "template", name, os.path.join(upstream_checkout(), "charts/gmsa"), "--namespace", namespace, "--kube-version", "1.36.0",
               "--set", "certificates.certManager.enabled=false", "--set", "certificates.caBundle=" + _b64(ca.cert),
               "--set", "podDisruptionBudget.enabled=true", "--set", "podDisruptionBudget.maxUnavailable=1",
               # The chart's default tag is v0.12.1; the lab runs only the v0.13.0 it builds (tests/lab/webhook.py).
               "--set", "image.tag=v0.13.0"]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True, env=dict(os.environ, HELM_CACHE_HOME="/tmp/itest-helm")).stdout
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "gmsa-server-cert", "namespace": namespace},
              "data": {"ca.crt": _b64(ca.cert), "tls.crt": _b64(server.cert), "tls.key": _b64(server.key)}}
    return _defused([secret] + [document for document in yaml.safe_load_all(rendered) if document], name)


RENDERERS = {"deploy script": render_deploy_script_install, "helm chart": render_chart_install}


@pytest.mark.parametrize("origin", sorted(RENDERERS))
def test_an_install_made_by_someone_else_is_refused_before_anything_changes(lab, origin):
    name = PREFIX + origin.replace(" ", "-")
    documents = RENDERERS[origin](name, name)
    if not any(document["kind"] == "Namespace" for document in documents):
        kubectl(lab, "create", "namespace", name)  # helm install --create-namespace
    kubectl(lab, "apply", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(document) for document in documents))
    refs = [(document["kind"], document["metadata"].get("namespace"), document["metadata"]["name"]) for document in documents]
    refs.append(("Namespace", None, name))
    before = versions(lab, refs)
    try:
        play = run_play(lab, [gmsa_webhook(harmless(lab, name, name))])
        assert play.rc != 0
        message = play.result["msg"]
        assert message.startswith("refusing to take over objects this install did not create: ")
        for kind in TAKEN_OVER_KINDS:
            assert "%s %s%s" % (kind, "" if kind.endswith("WebhookConfiguration") else name + "/", name) in message, kind
        assert ("windows-gmsa Helm chart (gmsa-" if origin == "helm chart" else "upstream's deploy-gmsa-webhook.sh") in message
        assert "helm uninstall" in message and "another name and namespace" in message
        assert play.result["objects"] == []
        assert versions(lab, refs) == before
        assert metadata_of(lab, "secret", name + "-tls", name) is None
    finally:
        kubectl(lab, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(document) for document in documents))
        kubectl(lab, "delete", "namespace", name, "--ignore-not-found", "--wait=false")


# --- upstream's options -----------------------------------------------------------------------------------------


def may_list_credspecs(lab, user):
    command = [lab["binaries"]["kubectl"], "--kubeconfig", lab["kubeconfig"], "auth", "can-i", "list", "gmsacredentialspecs.windows.k8s.io",
               "--as", user, "--quiet"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def test_upstream_options_reach_the_pods_and_the_view_role(lab):
    name = PREFIX + "options"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}}
    options = harmless(
        lab, name, name, qps=12.5, burst=25, priority_class_name="system-cluster-critical", affinity=affinity,
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        image_pull_secrets=["mirror-pull"], image_pull_policy="Always", log_level="debug", view_aggregation=True,
    )
    viewer = "system:serviceaccount:%s:viewer" % name
    try:
        play = run_play(lab, [gmsa_webhook(options)])
        assert play.rc == 0, play.output
        pod = kubectl_json(lab, "get", "deployment", "-n", name, name)["spec"]["template"]["spec"]
        env = {item["name"]: item["value"] for item in pod["containers"][0]["env"]}
        assert (env["QPS"], env["BURST"], env["LOG_LEVEL"]) == ("12.5", "25", "debug")
        assert pod["priorityClassName"] == "system-cluster-critical" and pod["affinity"] == affinity
        assert pod["tolerations"] == options["tolerations"] and pod["imagePullSecrets"] == [{"name": "mirror-pull"}]
        assert pod["containers"][0]["imagePullPolicy"] == "Always"
        # The API server resolved the priority class for the pods (admission plugin Priority).
        deadline = time.monotonic() + 60
        while not (pods := kubectl_json(lab, "get", "pods", "-n", name, "-l", "app.kubernetes.io/instance=" + name)["items"]):
            assert time.monotonic() < deadline, "no pod of Deployment %s" % name
            time.sleep(0.5)
        assert pods[0]["spec"]["priority"] == 2000000000
        # The controller manager aggregates the viewer role into "view". Credspecs are cluster-scoped, so this
        # reaches those bound to view cluster-wide.
        kubectl(lab, "create", "serviceaccount", "-n", name, "viewer")
        assert not may_list_credspecs(lab, viewer)
        kubectl(lab, "create", "clusterrolebinding", name + "-viewer", "--clusterrole=view", "--serviceaccount=%s:viewer" % name)
        deadline = time.monotonic() + 30
        while not may_list_credspecs(lab, viewer):
            assert time.monotonic() < deadline, "view was not given gmsacredentialspecs"
            time.sleep(0.5)
        # Off again: the role goes, and with it the permission.
        play = run_play(lab, [gmsa_webhook(options, view_aggregation=False)])
        assert play.rc == 0, play.output
        assert {"object": "ClusterRole %s-viewer" % name, "action": "deleted"} in play.result["objects"]
        assert metadata_of(lab, "clusterrole", name + "-viewer") is None
        deadline = time.monotonic() + 30
        while may_list_credspecs(lab, viewer):
            assert time.monotonic() < deadline, "view kept gmsacredentialspecs"
            time.sleep(0.5)
    finally:
        kubectl(lab, "delete", "clusterrolebinding", name + "-viewer", "--ignore-not-found")
        assert run_play(lab, [gmsa_webhook(options, state="absent", wait=True)]).rc == 0


def test_a_provided_certificate_is_served_and_left_to_its_owner(lab):
    name = PREFIX + "provided"
    kubectl(lab, "create", "namespace", name)
    ca, server = _serving_material(name, name)
    with open(os.path.join(lab["state_dir"], "itest-wi-provided.crt"), "w", encoding="utf-8") as cert_file:
        cert_file.write(server.cert)
    with open(os.path.join(lab["state_dir"], "itest-wi-provided.key"), "w", encoding="utf-8") as key_file:
        key_file.write(server.key)
    kubectl(lab, "create", "secret", "tls", "serving", "-n", name, "--cert", cert_file.name, "--key", key_file.name)
    os.unlink(key_file.name)
    os.unlink(cert_file.name)
    secret_before = metadata_of(lab, "secret", "serving", name)
    options = harmless(lab, name, name, tls={"mode": "provided", "secret_name": "serving", "ca_bundle": ca.cert})
    try:
        # A bundle that did not issue it is refused before anything changes.
        other_ca, _other = _serving_material(name, name)
        play = run_play(lab, [gmsa_webhook(options, tls=dict(options["tls"], ca_bundle=other_ca.cert))])
        assert play.rc != 0
        refusal = "tls.secret_name: Secret %s/serving cannot serve the webhook: its certificate was not issued by a certificate of tls.ca_bundle"
        assert refusal % name in play.result["msg"]
        assert metadata_of(lab, "deployment", name, name) is None
        play = run_play(lab, [gmsa_webhook(options)])
        assert play.rc == 0, play.output
        assert play.result["serving_certificate_sha256"] == _tls.fingerprint(server.cert) and "certificate" not in play.result
        template = kubectl_json(lab, "get", "deployment", "-n", name, name)["spec"]["template"]
        assert template["spec"]["volumes"] == [{"name": "tls", "secret": {"secretName": "serving", "defaultMode": 420}}]
        assert template["metadata"]["annotations"]["wincontainers.gmsa/serving-certificate-sha256"] == _tls.fingerprint(server.cert)
        bundle = kubectl_json(lab, "get", "mutatingwebhookconfiguration", name)["webhooks"][0]["clientConfig"]["caBundle"]
        assert base64.b64decode(bundle).decode() == ca.cert
        assert not run_play(lab, [gmsa_webhook(options)]).result["changed"]
    finally:
        removal = run_play(lab, [gmsa_webhook(options, state="absent")])
    assert removal.rc == 0, removal.output
    assert metadata_of(lab, "secret", "serving", name)["resourceVersion"] == secret_before["resourceVersion"]
    assert metadata_of(lab, "namespace", name) is not None
    kubectl(lab, "delete", "namespace", name, "--wait=false")


# --- the real webhook: renewals and migrations while pods keep coming -------------------------------------------
#
# The lab serves every Running pod of the webhook image with the real binary (tests/lab), each pod its own
# process reading its own projected Secret at start, as a container does. These tests create a gMSA pod (server
# dry run) every 200 ms while the webhook is renewed or migrated and count every answer that is not an admission
# with the credspec inlined.

APPS = PREFIX + "apps"
APP_CREDSPEC = "itest-wi-app"
DOMAIN = {"dns_name": "itest.example", "netbios_name": "ITEST", "sid": "S-1-5-21-1004336348-1177238915-682003330",
          "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e"}
CREDSPEC = {"account_name": "ItestWiApp", "name": APP_CREDSPEC, "service_accounts": [{"name": "allowed", "namespace": APPS}]}


def credspec_task(state="present"):
    return {"wincontainers.gmsa.gmsa_credspec": {"domain": DOMAIN, "credspecs": [CREDSPEC], "state": state}}


class AdmissionLoad:
    """Create an authorized gMSA pod as a server-side dry run every ``interval`` s; record what was not admitted."""

    def __init__(self, lab, interval=0.2):
        from kubernetes import client, config  # noqa: PLC0415 - only the load needs the client library

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=lab["kubeconfig"]))
        self.interval, self.admitted, self.failures = interval, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pod(self):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "itest-wi-load-", "namespace": APPS},
                "spec": {"serviceAccountName": "allowed", "nodeSelector": {"kubernetes.io/os": "windows"},
                         "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": APP_CREDSPEC}},
                         "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}]}}

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                pod = self.api.create_namespaced_pod(APPS, self._pod(), dry_run="All", _request_timeout=15)
                if pod.spec.security_context.windows_options.gmsa_credential_spec:
                    self.admitted += 1
                else:
                    self.failures.append("%s: admitted without the credspec inlined (the webhook was not called)" % time.strftime("%H:%M:%S"))
            except Exception as error:  # pylint: disable=broad-exception-caught  # every refusal is recorded
                self.failures.append("%s: %s" % (time.strftime("%H:%M:%S"), getattr(error, "body", None) or error))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


# Run inside a pod's network namespace: the certificate its webhook serves, PEM, on stdout.
_READ_SERVED_CERTIFICATE = """
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as raw, context.wrap_socket(raw) as tls:
    sys.stdout.write(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)))
"""


def served_serials(lab, namespace, service):
    """{pod IP: serial of the certificate it serves} for every ready endpoint of the Service, read with a TLS
    handshake from inside the pod's own network namespace (the lab kubelet's record says which)."""
    from cryptography import x509  # noqa: PLC0415

    serving = lab_kubelet.wait_serving(lab, namespace, service)
    serials = {}
    for address in serving["addresses"]:
        command = ["ip", "netns", "exec", serving["netns"][address], sys.executable, "-c", _READ_SERVED_CERTIFICATE, address, str(serving["port"])]
        pem = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        serials[address] = x509.load_pem_x509_certificate(pem.encode()).serial_number
    return serials


def secret_serial(lab, namespace, secret):
    from cryptography import x509  # noqa: PLC0415

    pem = base64.b64decode(kubectl_json(lab, "get", "secret", "-n", namespace, secret)["data"]["tls.crt"])
    return x509.load_pem_x509_certificate(pem).serial_number


@pytest.fixture(name="apps", scope="module")
def fixture_apps(lab):
    """The namespace the load's pods are created in, its service account, and the credspec it may use."""
    if metadata_of(lab, "namespace", APPS) is None:
        kubectl(lab, "create", "namespace", APPS)
        kubectl(lab, "create", "serviceaccount", "-n", APPS, "allowed")
    play = run_play(lab, [credspec_task()])
    assert play.rc == 0, play.output
    yield APPS
    run_play(lab, [credspec_task("absent")])


# A failed admission's message names the pod's address: ...->10.244.0.4:443: read: connection reset by peer
_LOST_CONNECTION = re.compile(r"-(?:>|\\u003e)([0-9.]+):[0-9]+: (?:write: broken pipe|read: connection reset by peer)")


def lost_on_an_exiting_pod(failure, exiting):
    """Whether an admission failed on the API server's kept-alive connection to a webhook pod that exited without
    draining, one of the pod IPs in `exiting`: EOF when the pod went after the request was written (Go's message names
    no address), a broken pipe when it went just before, a reset when it went with the request unread in its socket
    (Linux answers the close of a socket with unread data with RST: net/ipv4/tcp.c __tcp_close, RFC 2525 2.17)."""
    if '": EOF"' in failure:
        return True
    lost = _LOST_CONNECTION.search(failure)
    return lost is not None and lost.group(1) in exiting


def real(lab, name, **options):
    """A served install that intercepts only the apps namespace, failing closed as in production."""
    return harmless(lab, name, name, wait=True, failure_policy="Fail", timeout_seconds=10, probe_namespace=APPS, wait_timeout=180, **options)


def test_two_renewals_reach_the_pods_and_admission_never_fails(lab, apps):
    name = PREFIX + "renewal"
    options = real(lab, name)
    try:
        play = run_play(lab, [gmsa_webhook(options)])
        assert play.rc == 0, play.output
        served = served_serials(lab, name, name)
        assert set(served.values()) == {secret_serial(lab, name, name + "-tls")}
        rolls = []
        exiting = set()
        with AdmissionLoad(lab) as load:
            for renewal in (1, 2):
                exiting.update(served)
                started = time.monotonic()
                play = run_play(lab, [gmsa_webhook(options, tls={"renew_before_days": 400})])
                rolls.append(time.monotonic() - started)
                assert play.rc == 0, play.output
                assert play.result["certificate"]["renewed"], renewal
                assert play.result["admission"] == "the webhook refused a pod naming a missing credspec"
                # Every pod behind the Service serves the Secret's current certificate: the roll, not a reload.
                current = secret_serial(lab, name, name + "-tls")
                served = served_serials(lab, name, name)
                assert set(served.values()) == {current}, renewal
            time.sleep(1)
        # The one failure a roll may cause (gmsa_webhook's notes): a request in flight on an old pod as it exits
        # gets EOF or a reset. Upstream v0.13.0's main.go handles no SIGTERM, and k8s.io/apiserver's DefaultShouldRetry
        # retries neither. At most one per old pod (two replicas, two renewals); any other failure is ours.
        in_flight = [failure for failure in load.failures if lost_on_an_exiting_pod(failure, exiting)]
        print("\nrenewal rolls (module run, roll and admission probe): %s s; %d pods admitted during them, %d not (%d in flight on an exiting pod)"
              % (", ".join("%.1f" % seconds for seconds in rolls), load.admitted, len(load.failures), len(in_flight)))
        assert load.admitted > 10
        assert [failure for failure in load.failures if failure not in in_flight] == [], "\n".join(load.failures)
        assert len(in_flight) <= 4, "\n".join(in_flight)
    finally:
        assert run_play(lab, [gmsa_webhook(options, state="absent")]).rc == 0


def test_a_namespace_opted_out_with_upstreams_older_label_stays_opted_out(lab, apps):
    name = PREFIX + "legacy-label"
    options = real(lab, name)
    opted_out = PREFIX + "opted-out"
    kubectl(lab, "create", "namespace", opted_out)
    kubectl(lab, "label", "namespace", opted_out, "gmsa-webhook=disabled")
    options["excluded_namespaces"] = [namespace for namespace in options["excluded_namespaces"] if namespace != opted_out]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "itest-wi-opted-out", "namespace": opted_out},
           "spec": {"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "no-such-credspec"}},
                    "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}]}}
    try:
        assert run_play(lab, [gmsa_webhook(options)]).rc == 0
        # Not intercepted: admitted as it is, although the credspec it names does not exist.
        admitted = json.loads(kubectl(lab, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod)))
        assert "gmsaCredentialSpec" not in admitted["spec"]["securityContext"]["windowsOptions"]
        # The same pod where the label is gone is refused by the webhook.
        kubectl(lab, "label", "namespace", opted_out, "gmsa-webhook-")
        with pytest.raises(kube.LabError, match="cred spec no-such-credspec does not exist"):
            kubectl(lab, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod))
    finally:
        assert run_play(lab, [gmsa_webhook(options, state="absent")]).rc == 0
        kubectl(lab, "delete", "namespace", opted_out, "--wait=false")


@pytest.mark.parametrize("origin", sorted(RENDERERS))
def test_adopting_an_install_made_by_someone_else_keeps_admission_working(lab, apps, origin):
    name = PREFIX + "adopt-" + origin.replace(" ", "-")
    documents = RENDERERS[origin](name, name)
    for document in documents:
        if document["kind"].endswith("WebhookConfiguration"):
            # Theirs intercepts the apps namespace only, failing closed, like ours will.
            for hook in document["webhooks"]:
                hook["failurePolicy"] = "Fail"
                hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": APPS}}
    if not any(document["kind"] == "Namespace" for document in documents):
        kubectl(lab, "create", "namespace", name)
    kubectl(lab, "apply", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(document) for document in documents))
    kubectl(lab, "wait", "--for=condition=Available", "deployment/" + name, "-n", name, "--timeout=120s")
    options = real(lab, name, adopt=True)
    uids = {kind: metadata_of(lab, kind, name, None if kind.endswith("configuration") else name)["uid"]
            for kind in ("service", "serviceaccount", "mutatingwebhookconfiguration", "validatingwebhookconfiguration")}
    credspec_uid = metadata_of(lab, "gmsacredentialspec", APP_CREDSPEC)["uid"]
    theirs = set(served_serials(lab, name, name))
    try:
        with AdmissionLoad(lab) as load:
            started = time.monotonic()
            play = run_play(lab, [gmsa_webhook(options)], "-vv", callback="default")
            seconds = time.monotonic() - started
            time.sleep(1)
        assert play.rc == 0, play.output
        print("\nadopting the %s install: %.1f s; %d pods admitted meanwhile, %d not" % (origin, seconds, load.admitted, len(load.failures)))
        assert load.admitted > 10
        # Their pods stop at once when their Deployment goes (upstream's manifests have no preStop hook and the
        # binary exits on SIGTERM): a request in flight on the API server's kept-alive connection to one of them
        # ends in EOF. Nothing else may fail: no refusal, no certificate the API server does not trust, no gap.
        unexpected = [failure for failure in load.failures if not lost_on_an_exiting_pod(failure, theirs)]
        assert unexpected == [], "\n".join(load.failures)
        # The same objects, now this collection's; the credspec untouched; the old TLS Secret named, not deleted.
        for kind, uid in uids.items():
            live = metadata_of(lab, kind, name, None if kind.endswith("configuration") else name)
            assert live["uid"] == uid and live["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa", kind
        assert metadata_of(lab, "gmsacredentialspec", APP_CREDSPEC)["uid"] == credspec_uid
        assert metadata_of(lab, "deployment", name + "-handover", name) is None
        assert "the adopted install also made these, which this module leaves in place" in play.output
        assert set(served_serials(lab, name, name).values()) == {secret_serial(lab, name, name + "-tls")}
        rerun = run_play(lab, [gmsa_webhook(options, adopt=False)])
        assert rerun.rc == 0 and not rerun.result["changed"], rerun.output
    finally:
        assert run_play(lab, [gmsa_webhook(options, state="absent", adopt=False)]).rc == 0
        kubectl(lab, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin="\n---\n".join(yaml.safe_dump(document) for document in documents))
        kubectl(lab, "delete", "namespace", name, "--ignore-not-found", "--wait=false")
