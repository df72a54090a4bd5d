"""gmsa_webhook and gmsa_credspec against the lab: a real API server and the real windows-gmsa webhook.

The modules run through ansible-playbook, as users run them; nothing is mocked. The lab harness
(tests/lab/webhook.py) plays kubelet for the webhook Deployment the module creates: it runs the real binary
with the Secret and ServiceAccount the module made, at the Service's endpoint IPs.

The tests run in order. The first ones need only the API server, the next ones the CRD, the last ones the
real webhook answering admission (built from the source $WGMSA_WINDOWS_GMSA_SOURCE names, see
tests/lab/build.py; without it they fail saying so). The lab is shared with other suites, so comparisons of
object lists look at what this suite could have touched.

    python -m pytest tests/integration/test_cluster_gmsa.py -v -rs     # from the repository root, as root
"""

import base64
import json
import subprocess
import threading
import time

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd
from tests.integration.support import kubectl, kubectl_json, run_play
from tests.lab import kube, netns, webhook

pytest_plugins = ("tests.lab.pytest_kube",)

NAME = "itest-gmsa-webhook"
NAMESPACE = "itest-gmsa-system"
APPS = "itest-gmsa-apps"
CRD_KEY = ("CustomResourceDefinition", None, "gmsacredentialspecs.windows.k8s.io")
DOMAIN = {
    "dns_name": "itest.example",
    "netbios_name": "ITEST",
    "sid": "S-1-5-21-1004336348-1177238915-682003330",
    "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e",
}
PASSWORD = "Itest-Portable-Pa55w0rd!"
IDENTITY = {"username": "itest-portable", "password": PASSWORD}
ROTATED = dict(IDENTITY, password="Itest-Rotated-Pa55w0rd!")
ITEST_APP = {
    "account_name": "ItestApp",
    "service_accounts": [{"name": "allowed", "namespace": APPS}],
    "identity_secret": {"name": "itest-identity"},
    "host_account_config": {"plugin_guid": "{6A4C4B4E-1D7F-4A4B-9C7E-3F1B2C3D4E5F}", "plugin_input": "ns=${secret_namespace};name=${secret_name}"},
}
ITEST_OTHER = {"account_name": "ItestOther$", "name": "itest-other", "service_accounts": [{"name": "other", "namespace": APPS}]}
WEBHOOK = {"name": NAME, "namespace": NAMESPACE, "wait_timeout": 120}
SNAPSHOT_KINDS = (
    "namespaces,customresourcedefinitions,clusterroles,clusterrolebindings,mutatingwebhookconfigurations,"
    "validatingwebhookconfigurations,serviceaccounts,secrets,services,deployments,poddisruptionbudgets,rolebindings"
)


def webhook_task(**options):
    return {"wincontainers.gmsa.gmsa_webhook": dict(WEBHOOK, **options)}


def credspec_task(credspecs, **options):
    return {"wincontainers.gmsa.gmsa_credspec": dict({"domain": DOMAIN, "credspecs": credspecs}, **options)}


def snapshot(lab):
    """Every object of the kinds this suite writes: {(kind, namespace, name): uid}."""
    items = kubectl_json(lab, "get", SNAPSHOT_KINDS, "--all-namespaces")["items"]
    if any(key == CRD_KEY for key in ((item["kind"], None, item["metadata"]["name"]) for item in items)):
        items += kubectl_json(lab, "get", "gmsacredentialspecs")["items"]
    return {(item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]): item["metadata"]["uid"] for item in items}


# Names and namespaces of everything this suite creates (other suites on the lab use other itest- names).
OUR_PREFIXES = (
    "itest-gmsa", "itest-staged", "itest-never-ready", "itest-refusing", "itest-foreign", "itest-other", "itestapp",
    "gmsa-use-itestapp", "gmsa-use-itest-other",
)


def ours(keys):
    """The objects among ``keys`` that this suite creates, and the CRD."""
    return {key for key in keys if key == CRD_KEY or any(part.startswith(OUR_PREFIXES) for part in (key[1] or "", key[2]))}


def our_snapshot(lab):
    """What :func:`snapshot` holds of this suite's objects; other suites share the lab and change theirs meanwhile."""
    objects = snapshot(lab)
    return {key: objects[key] for key in ours(objects)}


def may_use(lab, account, credspec):
    command = [lab["binaries"]["kubectl"], "--kubeconfig", lab["kubeconfig"], "auth", "can-i", "use", "gmsacredentialspecs.windows.k8s.io/" + credspec,
               "-n", APPS, "--as", "system:serviceaccount:%s:%s" % (APPS, account), "--quiet"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def dry_run_pod(lab, account, credspec):
    """Create a gMSA pod as a server-side dry run: (the pod as admitted, None) or (None, why it was refused)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "itest-probe", "namespace": APPS},
        "spec": {
            "serviceAccountName": account,
            "nodeSelector": {"kubernetes.io/os": "windows"},
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": credspec}},
            "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022"}],
        },
    }
    try:
        return json.loads(kubectl(lab, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod))), None
    except kube.LabError as error:
        return None, str(error)


@pytest.fixture(name="lab", scope="module")
def fixture_lab(kube_lab):
    before = snapshot(kube_lab)
    kubectl(kube_lab, "create", "namespace", APPS)
    for account in ("allowed", "other", "nobody"):
        kubectl(kube_lab, "create", "serviceaccount", "-n", APPS, account)
    yield dict(kube_lab, before=before)
    # Whatever a failed test left: remove it, so the shared lab is not wedged by a failurePolicy Fail webhook.
    run_play(kube_lab, [credspec_task([ITEST_APP, ITEST_OTHER], state="absent")])
    run_play(kube_lab, [webhook_task(state="absent")])
    command = [kube_lab["binaries"]["kubectl"], "--kubeconfig", kube_lab["kubeconfig"], "delete", "namespace", APPS, "--ignore-not-found", "--wait"]
    subprocess.run(command, capture_output=True, check=False)
    if CRD_KEY not in before and CRD_KEY in snapshot(kube_lab) and not kubectl_json(kube_lab, "get", "gmsacredentialspecs")["items"]:
        kubectl(kube_lab, "delete", "crd", CRD_KEY[2], "--ignore-not-found")


# --- the API server only ----------------------------------------------------------------------------------


def test_check_mode_of_a_first_install_predicts_everything_and_writes_nothing(lab):
    before = our_snapshot(lab)
    play = run_play(lab, [webhook_task()], "--check")
    assert play.rc == 0, play.output
    assert play.result["changed"] and play.result["ready_replicas"] == 0
    assert {entry["action"] for entry in play.result["objects"] if "CustomResourceDefinition" not in entry["object"]} == {"created"}
    # Objects in the namespace the run would create cannot be dry-run yet: predicted, and said so.
    assert any("check mode could not validate Deployment %s/%s" % (NAMESPACE, NAME) in warning for warning in play.result["warnings"])
    assert our_snapshot(lab) == before


def test_invalid_input_is_refused_before_anything_changes(lab):
    before = our_snapshot(lab)
    play = run_play(lab, [webhook_task(name="Bad_Name")])
    assert play.rc != 0 and "name: 'Bad_Name' is not a lowercase RFC 1123 label" in play.result["msg"]
    play = run_play(lab, [credspec_task([dict(ITEST_APP, host_account_config={"plugin_guid": "{123}", "plugin_input": "x"})])])
    assert play.rc != 0 and "credspecs[0].host_account_config.plugin_guid: '{123}' is not a GUID" in play.result["msg"]
    play = run_play(lab, [credspec_task([dict(ITEST_APP, name="Itest.App")])])
    assert play.rc != 0 and "credspecs[0].name: 'Itest.App' is not a lowercase RFC 1123 subdomain" in play.result["msg"]
    assert our_snapshot(lab) == before


def test_cert_manager_mode_without_cert_manager_is_refused_before_anything_changes(lab):
    before = our_snapshot(lab)
    play = run_play(lab, [webhook_task(tls={"mode": "cert_manager"})])
    assert play.rc != 0
    assert "tls.mode=cert_manager needs cert-manager, but its CRD certificates.cert-manager.io is not installed" in play.result["msg"]
    assert play.result["objects"] == [] and our_snapshot(lab) == before


def test_unreachable_api_server_is_reported(lab):
    play = run_play(lab, [webhook_task(host="https://127.0.0.1:9")])
    assert play.rc != 0
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:9" in play.result["msg"]


def test_forbidden_by_rbac_is_reported_and_the_token_never_shown(lab):
    token = kubectl(lab, "create", "token", "-n", APPS, "nobody").strip()
    play = run_play(lab, [webhook_task(kubeconfig=None, host=lab["server"], api_key=token, ca_cert=lab["ca_file"])], "-vvv", callback="default")
    assert play.rc != 0
    assert "forbidden by RBAC" in play.output and "system:serviceaccount:%s:nobody" % APPS in play.output
    assert token not in play.output


def test_webhook_that_never_becomes_ready_times_out_naming_it(lab):
    options = {"name": "itest-never-ready", "namespace": "itest-never-ready", "node_selector": {"itest/no-such-node": "true"}, "wait_timeout": 5}
    play = run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": options}])
    try:
        assert play.rc != 0
        assert "Deployment itest-never-ready/itest-never-ready not ready after 5 s: " in play.result["msg"]
        # Admission was never pointed at a webhook that is not running.
        assert "WebhookConfiguration" not in json.dumps(play.result["objects"])
    finally:
        # Uninstall waits for its namespace to be gone, which takes the namespace controller longer than 5 s.
        removal = run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": dict(options, state="absent", wait_timeout=120)}])
        assert removal.rc == 0, removal.output
        kubectl(lab, "wait", "--for=delete", "namespace/itest-never-ready", "--timeout=60s")


def ready_endpoint_ips(lab, namespace, service, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slices = kubectl_json(lab, "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=" + service)["items"]
        endpoints = [endpoint for item in slices for endpoint in item.get("endpoints") or [] if endpoint["conditions"].get("ready")]
        addresses = [address for endpoint in endpoints for address in endpoint["addresses"]]
        if addresses:
            return addresses
        time.sleep(0.5)
    raise AssertionError("no ready endpoints for %s/%s" % (namespace, service))


# An image the lab kubelet does not run: kwok makes such pods Ready at once, and nothing of the lab serves them.
NOT_THE_WEBHOOK_IMAGE = "registry.k8s.io/pause:3.10"


def refusing_pods(lab, addresses, index=0):
    """A network namespace of the test owning the pod IPs, with nothing listening: every call is refused at once.

    Without it the API server's calls to those IPs would find no route (the lab's namespaces have none).
    """
    name = "%s.itest-refuse%d" % (netns.cluster_netns(lab["cluster"]), index)
    return webhook.PodNetwork(name, addresses, lab.get("netns"), "itr%d" % index)


def test_webhook_that_never_answers_admission_times_out_naming_it(lab):
    """Available pods that refuse every connection: admission is registered, the probe fails, the wait names it."""
    name = "itest-refusing"
    others = sorted(item["metadata"]["name"] for item in kubectl_json(lab, "get", "namespaces")["items"] if item["metadata"]["name"] != APPS)
    # Only the suite's namespace is intercepted, so the shared lab's other pods never meet this webhook.
    options = dict(name=name, namespace=name, wait_timeout=15, excluded_namespaces=others, probe_namespace=APPS, image=NOT_THE_WEBHOOK_IMAGE)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(play=run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": options}])))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                kubectl(lab, "get", "service", "-n", name, name)
                break
            except kube.LabError:
                time.sleep(0.5)
        with refusing_pods(lab, ready_endpoint_ips(lab, name, name)):
            runner.join()
            play = outcome["play"]
            assert play.rc != 0
            message = play.result["msg"]
            assert message.startswith("admission by webhook %s (Service %s/%s, probed in namespace %s) not ready after 15 s: " % (name, name, name, APPS))
            assert "connection refused" in message
            removal = run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": dict(options, state="absent", wait_timeout=120)}])
            assert removal.rc == 0, removal.output
            assert [entry["object"] for entry in removal.result["objects"][:2]] == [
                "ValidatingWebhookConfiguration " + name,
                "MutatingWebhookConfiguration " + name,
            ]
    finally:
        runner.join()
        run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": dict(options, state="absent", wait_timeout=120)}])
    kubectl(lab, "wait", "--for=delete", "namespace/" + name, "--timeout=60s")


# --- credspecs: the API server and the CRD ---------------------------------------------------------------


@pytest.fixture(name="gmsa_crd", scope="module")
def fixture_gmsa_crd(lab):
    """The CRD as gmsa_webhook builds it, without registering a webhook (which may not be servable here)."""
    kubectl(lab, "apply", "--server-side", "--field-manager=itest", "-f", "-", stdin=json.dumps(crd()))
    kubectl(lab, "wait", "--for=condition=Established", "crd/" + CRD_KEY[2], "--timeout=60s")


@pytest.mark.usefixtures("gmsa_crd")
def test_credspec_check_mode_predicts_and_writes_nothing(lab):
    before = our_snapshot(lab)
    play = run_play(lab, [credspec_task([ITEST_APP], identity=IDENTITY)], "--check")
    assert play.rc == 0, play.output
    assert play.result["changed"]
    assert {entry["action"] for entry in play.result["objects"]} == {"created"}
    assert our_snapshot(lab) == before


@pytest.mark.usefixtures("gmsa_crd")
def test_credspecs_are_created_in_one_task_and_a_rerun_changes_nothing(lab, tmp_path):
    json_path = str(tmp_path / "itestapp.json")
    entries = [dict(ITEST_APP, json_path=json_path), ITEST_OTHER]
    play = run_play(lab, [credspec_task(entries, identity=IDENTITY)])
    assert play.rc == 0, play.output
    # Two credspecs, each with its ClusterRole, RoleBinding and identity Secret.
    assert [entry["action"] for entry in play.result["objects"]] == ["created"] * 8
    credspec = kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["credspec"]
    assert credspec["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"] == "ns=%s;name=itest-identity" % APPS
    assert credspec["DomainJoinConfig"]["Sid"] == DOMAIN["sid"] and credspec["DomainJoinConfig"]["MachineAccountName"] == "ItestApp"
    with open(json_path, encoding="utf-8") as written:
        assert json.load(written) == credspec
    role = kubectl_json(lab, "get", "clusterrole", "gmsa-use-itestapp")
    assert role["rules"] == [{"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"], "resourceNames": ["itestapp"]}]
    secret = kubectl_json(lab, "get", "secret", "-n", APPS, "itest-identity")["data"]
    assert {key: base64.b64decode(value).decode() for key, value in secret.items()} == {
        "domain": DOMAIN["dns_name"],
        "username": IDENTITY["username"],
        "password": PASSWORD,
    }
    rerun = run_play(lab, [credspec_task(entries, identity=IDENTITY)])
    assert rerun.rc == 0, rerun.output
    assert not rerun.result["changed"]


@pytest.mark.usefixtures("gmsa_crd")
def test_create_service_accounts_makes_only_the_missing_ones_in_the_same_task(lab):
    fresh = "itest-gmsa-fresh"
    # A credspec of its own: the tests after this one use those of the test before.
    accounts = [{"name": "other", "namespace": APPS}, {"name": "newcomer", "namespace": fresh}]
    entry = {"account_name": "ItestFresh", "name": "itest-other-fresh", "service_accounts": accounts}
    try:
        play = run_play(lab, [credspec_task([entry], create_service_accounts=True)])
        assert play.rc == 0, play.output
        created = {entry["object"] for entry in play.result["objects"] if entry["action"] == "created"}
        assert {"Namespace " + fresh, f"ServiceAccount {fresh}/newcomer", f"RoleBinding {fresh}/gmsa-use-itest-other-fresh"} <= created, created
        # What existed before (the suite's namespace and its service account) is neither changed nor labelled.
        assert not {f"Namespace {APPS}", f"ServiceAccount {APPS}/other"} & created
        assert "app.kubernetes.io/managed-by" not in kubectl_json(lab, "get", "namespace", APPS)["metadata"]["labels"]
        assert kubectl_json(lab, "get", "namespace", fresh)["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa"
        assert kubectl_json(lab, "get", "serviceaccount", "-n", fresh, "newcomer")["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa"
        rerun = run_play(lab, [credspec_task([entry], create_service_accounts=True)])
        assert rerun.rc == 0 and not rerun.result["changed"], rerun.output
    finally:
        run_play(lab, [credspec_task([entry], state="absent")])
        kubectl(lab, "delete", "namespace", fresh, "--ignore-not-found", "--wait")


@pytest.mark.usefixtures("gmsa_crd")
def test_use_is_granted_through_the_bindings_only(lab):
    assert may_use(lab, "allowed", "itestapp")
    assert not may_use(lab, "other", "itestapp")
    assert may_use(lab, "other", "itest-other")
    assert not may_use(lab, "allowed", "itest-other")


@pytest.mark.usefixtures("gmsa_crd")
def test_changed_identity_needs_overwrite_and_its_diff_hides_the_password(lab):
    refused = run_play(lab, [credspec_task([ITEST_APP], identity=ROTATED)])
    assert refused.rc != 0
    assert "Secret %s/itest-identity exists with a different identity" % APPS in refused.result["msg"]
    assert refused.result["objects"] == []
    play = run_play(lab, [credspec_task([ITEST_APP], identity=ROTATED, overwrite=True)], "--diff", "-vvv", callback="default")
    assert play.rc == 0, play.output
    assert '"password": "<hidden, changed>"' in play.output
    for password in (PASSWORD, ROTATED["password"]):
        assert password not in play.output
        assert base64.b64encode(password.encode()).decode() not in play.output


@pytest.mark.usefixtures("gmsa_crd")
def test_credspec_the_collection_did_not_create_is_neither_taken_over_nor_removed(lab):
    foreign = {
        "apiVersion": "windows.k8s.io/v1",
        "kind": "GMSACredentialSpec",
        "metadata": {"name": "itest-foreign"},
        "credspec": {"CmsPlugins": ["ActiveDirectory"]},
    }
    kubectl(lab, "create", "-f", "-", stdin=json.dumps(foreign))
    entry = {"account_name": "ItestForeign", "name": "itest-foreign"}
    try:
        play = run_play(lab, [credspec_task([entry])])
        assert play.rc != 0
        assert "GMSACredentialSpec itest-foreign exists and was not created by this collection" in play.result["msg"]
        removal = run_play(lab, [credspec_task([entry], state="absent")])
        assert removal.rc == 0 and not removal.result["changed"], removal.output
        assert kubectl_json(lab, "get", "gmsacredentialspec", "itest-foreign")["credspec"] == foreign["credspec"]
    finally:
        kubectl(lab, "delete", "gmsacredentialspec", "itest-foreign")


@pytest.mark.usefixtures("gmsa_crd")
def test_removing_one_credspec_keeps_the_secret_another_still_uses(lab):
    shared = dict(ITEST_OTHER, identity_secret={"name": "itest-identity", "namespaces": [APPS]})
    setup = run_play(lab, [credspec_task([ITEST_APP, shared], identity=ROTATED)])
    assert setup.rc == 0, setup.output
    play = run_play(lab, [credspec_task([ITEST_APP], state="absent")])
    assert play.rc == 0, play.output
    assert [entry["object"] for entry in play.result["objects"]] == [
        "RoleBinding %s/gmsa-use-itestapp" % APPS,
        "ClusterRole gmsa-use-itestapp",
        "GMSACredentialSpec itestapp",
    ]
    kubectl(lab, "get", "secret", "-n", APPS, "itest-identity")


@pytest.mark.usefixtures("gmsa_crd")
def test_check_mode_removal_predicts_and_deletes_nothing(lab):
    setup = run_play(lab, [credspec_task([ITEST_APP], identity=ROTATED)])
    assert setup.rc == 0, setup.output
    before = our_snapshot(lab)
    play = run_play(lab, [credspec_task([ITEST_APP], state="absent")], "--check")
    assert play.rc == 0, play.output
    assert play.result["changed"]
    assert our_snapshot(lab) == before
    removal = run_play(lab, [credspec_task([ITEST_APP], state="absent")])
    assert removal.rc == 0, removal.output


@pytest.mark.usefixtures("gmsa_crd")
def test_credspec_removal_leaves_the_cluster_as_before(lab):
    before = our_snapshot(lab)
    created = run_play(lab, [credspec_task([ITEST_APP], identity=ROTATED)])
    assert created.rc == 0, created.output
    removal = run_play(lab, [credspec_task([ITEST_APP, ITEST_OTHER], state="absent")])
    assert removal.rc == 0, removal.output
    after = our_snapshot(lab)
    # The shared Secret went with its last user; nothing else of ours is left or was removed.
    other = {("Secret", APPS, "itest-identity"), ("GMSACredentialSpec", None, "itest-other"), ("ClusterRole", None, "gmsa-use-itest-other")}
    assert set(after) == set(before) - other - {("RoleBinding", APPS, "gmsa-use-itest-other")}


# --- the install, with pods that refuse every call instead of the real webhook --------------------------------
# Everything about the install but admission itself: idempotence, check mode, diff, renewal (a roll of the pods),
# upgrade, uninstall. Only the suite's namespace is intercepted, and the pod IPs belong to a namespace of the test.

STAGED = "itest-staged"


@pytest.fixture(name="staged", scope="module")
def fixture_staged(lab, gmsa_crd):
    others = sorted(item["metadata"]["name"] for item in kubectl_json(lab, "get", "namespaces")["items"] if item["metadata"]["name"] != APPS)
    options = {
        "name": STAGED, "namespace": STAGED, "wait": False, "excluded_namespaces": others + [STAGED], "probe_namespace": APPS,
        "image": NOT_THE_WEBHOOK_IMAGE,
    }
    before = our_snapshot(lab)
    started = time.monotonic()
    first = run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": options}])
    try:
        assert first.rc == 0, first.output
        applied = time.monotonic() - started
        kubectl(lab, "wait", "--for=condition=Available", "deployment/" + STAGED, "-n", STAGED, "--timeout=60s")
        print("\nwebhook install: %.1f s to apply every object, %.1f s to a Deployment Available" % (applied, time.monotonic() - started))
        with refusing_pods(lab, ready_endpoint_ips(lab, STAGED, STAGED), index=1):
            yield {"options": options, "first": first, "before": before}
    finally:
        run_play(lab, [{"wincontainers.gmsa.gmsa_webhook": dict(options, state="absent", wait_timeout=120)}])


def staged_task(staged, **options):
    return {"wincontainers.gmsa.gmsa_webhook": dict(staged["options"], **options)}


def test_staged_install_creates_every_object_once(staged):
    objects = {entry["object"]: entry["action"] for entry in staged["first"].result["objects"]}
    expected = [
        "Namespace " + STAGED, "ServiceAccount %s/%s" % (STAGED, STAGED), "ClusterRole " + STAGED, "ClusterRoleBinding " + STAGED,
        "Secret %s/%s-ca" % (STAGED, STAGED), "Secret %s/%s-tls" % (STAGED, STAGED), "Deployment %s/%s" % (STAGED, STAGED),
        "Service %s/%s" % (STAGED, STAGED), "PodDisruptionBudget %s/%s" % (STAGED, STAGED),
        "MutatingWebhookConfiguration " + STAGED, "ValidatingWebhookConfiguration " + STAGED,
    ]
    assert {ref: objects.get(ref) for ref in expected} == dict.fromkeys(expected, "created")


def test_staged_rerun_changes_nothing(lab, staged):
    play = run_play(lab, [staged_task(staged)])
    assert play.rc == 0, play.output
    assert not play.result["changed"]
    assert {entry["action"] for entry in play.result["objects"]} == {"unchanged"}


def test_staged_check_mode_reports_the_change_and_writes_nothing(lab, staged):
    before = kubectl_json(lab, "get", "deployment", "-n", STAGED, STAGED)
    play = run_play(lab, [staged_task(staged, replicas=3, log_level="debug")], "--check", "--diff")
    assert play.rc == 0, play.output
    assert {"object": "Deployment %s/%s" % (STAGED, STAGED), "action": "updated"} in play.result["objects"]
    assert kubectl_json(lab, "get", "deployment", "-n", STAGED, STAGED)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_staged_diff_of_a_certificate_renewal_hides_the_keys(lab, staged):
    play = run_play(lab, [staged_task(staged, tls={"renew_before_days": 400})], "--check", "--diff", "-vvv", callback="default")
    assert play.rc == 0, play.output
    assert '"tls.key": "<hidden, changed>"' in play.output
    assert "PRIVATE KEY" not in play.output
    for secret in (STAGED + "-tls", STAGED + "-ca"):
        assert kubectl_json(lab, "get", "secret", "-n", STAGED, secret)["data"]["tls.key"] not in play.output


def test_staged_renewal_keeps_the_ca_bundle_and_rolls_the_pods_onto_the_new_certificate(lab, staged):
    def ca_bundles():
        kinds = ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")
        return [kubectl_json(lab, "get", kind, STAGED)["webhooks"][0]["clientConfig"]["caBundle"] for kind in kinds]

    bundles = ca_bundles()
    old_cert = kubectl_json(lab, "get", "secret", "-n", STAGED, STAGED + "-tls")["data"]["tls.crt"]
    play = run_play(lab, [staged_task(staged, tls={"renew_before_days": 400})])
    assert play.rc == 0, play.output
    certificate = play.result["certificate"]
    assert certificate["renewed"] and "within the renewal window" in certificate["reason"]
    # The webhook reads its certificate at start (no --cert-reload, upstream issue 176): the new one's
    # fingerprint on the pod template rolls the pods.
    changed = [entry["object"] for entry in play.result["objects"] if entry["action"] != "unchanged"]
    assert changed == ["Secret %s/%s-tls" % (STAGED, STAGED), "Deployment %s/%s" % (STAGED, STAGED)]
    new_cert = base64.b64decode(kubectl_json(lab, "get", "secret", "-n", STAGED, STAGED + "-tls")["data"]["tls.crt"]).decode()
    assert new_cert != base64.b64decode(old_cert).decode()
    template = kubectl_json(lab, "get", "deployment", "-n", STAGED, STAGED)["spec"]["template"]
    assert template["metadata"]["annotations"]["wincontainers.gmsa/serving-certificate-sha256"] == _tls.fingerprint(new_cert)
    assert play.result["serving_certificate_sha256"] == _tls.fingerprint(new_cert)
    assert ca_bundles() == bundles
    # With the default window the new certificate is kept.
    play = run_play(lab, [staged_task(staged)])
    assert play.rc == 0 and not play.result["changed"] and not play.result["certificate"]["renewed"]


def test_staged_ca_rotation_keeps_the_old_ca_trusted_and_updates_trust_first(lab, staged):
    def pem_certificates(kind):
        bundle = base64.b64decode(kubectl_json(lab, "get", kind, STAGED)["webhooks"][0]["clientConfig"]["caBundle"]).decode()
        return ["-----BEGIN CERTIFICATE-----" + part for part in bundle.split("-----BEGIN CERTIFICATE-----")[1:]]

    old_ca = base64.b64decode(kubectl_json(lab, "get", "secret", "-n", STAGED, STAGED + "-ca")["data"]["tls.crt"]).decode()
    assert pem_certificates("validatingwebhookconfiguration") == [old_ca]
    # A window longer than the CA's validity puts the CA in it: a new CA signs a new server certificate.
    play = run_play(lab, [staged_task(staged, tls={"renew_before_days": 4000})])
    assert play.rc == 0, play.output
    assert "not issued by the current CA" in play.result["certificate"]["reason"]
    changed = [entry["object"] for entry in play.result["objects"] if entry["action"] != "unchanged"]
    # The API server trusts the new CA before the webhook can serve a certificate from it (the roll comes last).
    assert changed == [
        "Secret %s/%s-ca" % (STAGED, STAGED),
        "MutatingWebhookConfiguration " + STAGED,
        "ValidatingWebhookConfiguration " + STAGED,
        "Secret %s/%s-tls" % (STAGED, STAGED),
        "Deployment %s/%s" % (STAGED, STAGED),
    ]
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        bundle = pem_certificates(kind)
        assert len(bundle) == 2 and bundle[1] == old_ca and bundle[0] != old_ca
    rerun = run_play(lab, [staged_task(staged)])
    assert rerun.rc == 0 and not rerun.result["changed"], rerun.output


def test_staged_upgrade_keeps_credspecs(lab, staged):
    assert run_play(lab, [credspec_task([ITEST_APP], identity=IDENTITY, overwrite=True)]).rc == 0
    uid = kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["metadata"]["uid"]
    play = run_play(lab, [staged_task(staged, image="registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.12.1", timeout_seconds=15)])
    assert play.rc == 0, play.output
    changes = {entry["object"] for entry in play.result["objects"] if entry["action"] != "unchanged"}
    assert changes == {"Deployment %s/%s" % (STAGED, STAGED), "MutatingWebhookConfiguration " + STAGED, "ValidatingWebhookConfiguration " + STAGED}
    assert kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["metadata"]["uid"] == uid


def test_staged_crd_removal_is_refused_while_credspecs_exist(lab, staged):
    play = run_play(lab, [staged_task(staged, state="absent", remove_crd=True)])
    assert play.rc != 0
    assert "refusing to delete CRD %s: deleting it deletes its" % CRD_KEY[2] in play.result["msg"] and "itestapp" in play.result["msg"]
    kubectl(lab, "get", "validatingwebhookconfiguration", STAGED)


def test_staged_uninstall_removes_what_it_created_and_nothing_else(lab, staged):
    assert run_play(lab, [credspec_task([ITEST_APP], state="absent")]).rc == 0
    play = run_play(lab, [staged_task(staged, state="absent")])
    assert play.rc == 0, play.output
    actions = [(entry["object"], entry["action"]) for entry in play.result["objects"]]
    assert actions[:2] == [("ValidatingWebhookConfiguration " + STAGED, "deleted"), ("MutatingWebhookConfiguration " + STAGED, "deleted")]
    assert {action for _ref, action in actions} == {"deleted"}
    kubectl(lab, "wait", "--for=delete", "namespace/" + STAGED, "--timeout=60s")
    assert our_snapshot(lab) == staged["before"]
    rerun = run_play(lab, [staged_task(staged, state="absent")])
    assert rerun.rc == 0 and not rerun.result["changed"]


# --- the real webhook -------------------------------------------------------------------------------------


def install_and_serve(lab, **options):
    """Run the install; the lab kubelet runs the real binary for each pod of the Deployment as it appears."""
    started = time.monotonic()
    play = run_play(lab, [webhook_task(**options)])
    served = webhook.wait_serving(lab, NAMESPACE, NAME)
    return play, served, time.monotonic() - started


@pytest.fixture(name="installed", scope="module")
def fixture_installed(lab):
    play, served, seconds = install_and_serve(lab)
    print("\nwebhook install to Available and admitting: %.1f s" % seconds)
    return {"play": play, "served": served, "seconds": seconds}


def test_install_becomes_available_and_answers_admission(installed):
    play = installed["play"]
    assert play.rc == 0, play.output
    result = play.result
    assert result["changed"]
    assert result["ready_replicas"] == 2
    assert result["image"] == "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0"
    assert result["admission"] == "the webhook refused a pod naming a missing credspec"
    assert result["certificate"]["renewed"]
    assert {entry["action"] for entry in result["objects"] if "CustomResourceDefinition" not in entry["object"]} == {"created"}


def test_install_created_least_privilege_rbac_and_an_opted_out_namespace(lab, installed):
    role = kubectl_json(lab, "get", "clusterrole", NAME)
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get", "create"}
    assert kubectl_json(lab, "get", "namespace", NAMESPACE)["metadata"]["labels"]["windows.k8s.io/disabled"] == "true"
    # kubectl leaves managedFields out of its output unless asked (since 1.21).
    deployment = kubectl_json(lab, "get", "deployment", "-n", NAMESPACE, NAME, "--show-managed-fields")
    managers = {entry["manager"] for entry in deployment["metadata"]["managedFields"]}
    assert "wincontainers.gmsa" in managers


def test_rerun_changes_nothing(lab, installed):
    play = run_play(lab, [webhook_task()])
    assert play.rc == 0, play.output
    assert not play.result["changed"]
    assert {entry["action"] for entry in play.result["objects"]} == {"unchanged"}


def test_check_mode_reports_the_change_and_writes_nothing(lab, installed):
    before = kubectl_json(lab, "get", "deployment", "-n", NAMESPACE, NAME)
    play = run_play(lab, [webhook_task(replicas=3, log_level="debug")], "--check", "--diff")
    assert play.rc == 0, play.output
    assert {"object": "Deployment %s/%s" % (NAMESPACE, NAME), "action": "updated"} in play.result["objects"]
    after = kubectl_json(lab, "get", "deployment", "-n", NAMESPACE, NAME)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_diff_of_a_certificate_renewal_hides_the_keys(lab, installed):
    play = run_play(lab, [webhook_task(tls={"renew_before_days": 400})], "--check", "--diff", "-vvv", callback="default")
    assert play.rc == 0, play.output
    assert '"tls.key": "<hidden, changed>"' in play.output
    assert "PRIVATE KEY" not in play.output
    for secret in (NAME + "-tls", NAME + "-ca"):
        assert kubectl_json(lab, "get", "secret", "-n", NAMESPACE, secret)["data"]["tls.key"] not in play.output


def test_authorized_pod_is_admitted_with_the_objects_credspec(lab, installed):
    assert run_play(lab, [credspec_task([ITEST_APP], identity=IDENTITY, overwrite=True)]).rc == 0
    pod, error = dry_run_pod(lab, "allowed", "itestapp")
    assert error is None
    credspec = kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["credspec"]
    assert json.loads(pod["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpec"]) == credspec


# What the API server says when a webhook refuses, followed by the webhook's own message.
DENIED = 'admission webhook "admission-webhook.windows-gmsa.sigs.k8s.io" denied the request: '


def test_other_service_account_is_refused(lab, installed):
    _pod, error = dry_run_pod(lab, "other", "itestapp")
    # admission-webhook/webhook.go, validateCreateRequest.
    assert DENIED + 'service account "other" is not authorized to `use` GMSA cred spec "itestapp"' in error


def test_missing_credspec_is_refused(lab, installed):
    _pod, error = dry_run_pod(lab, "allowed", "no-such-credspec")
    # The mutating webhook runs first and cannot inline what does not exist (admission-webhook/kube_client.go,
    # retrieveCredSpecContents).
    assert DENIED + "cred spec no-such-credspec does not exist" in error


def test_update_changing_the_gmsa_name_is_refused(lab, installed):
    """Refused twice over: by the API server, and by the webhook when asked.

    The API server validates an update against the stored pod (k8s.io/apiserver pkg/registry/generic/registry/
    store.go, Update: rest.BeforeUpdate, then the validating admission webhooks), and a pod's security context
    is immutable (k8s.io/kubernetes pkg/apis/core/validation ValidatePodUpdate), so a changed gMSA name never
    reaches the webhook through the API. The webhook's own rule (admission-webhook/webhook.go,
    validateUpdateRequest) is proven by sending its /validate endpoint the AdmissionReview the API server would.
    """
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "itest-gmsa-update", "namespace": APPS},
        "spec": {
            "serviceAccountName": "allowed", "nodeSelector": {"kubernetes.io/os": "windows"},
            "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "itestapp"}},
            "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022"}],
        },
    }
    created = json.loads(kubectl(lab, "create", "-o", "json", "-f", "-", stdin=json.dumps(pod)))
    try:
        renamed = {"spec": {"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "itest-other"}}}}
        with pytest.raises(kube.LabError, match="pod updates may not change fields other than"):
            kubectl(lab, "patch", "pod", "-n", APPS, "itest-gmsa-update", "--type=merge", "-p", json.dumps(renamed))
        changed = json.loads(json.dumps(created))
        changed["spec"]["securityContext"]["windowsOptions"]["gmsaCredentialSpecName"] = "itest-other"
        response = ask_webhook(installed["served"], "/validate", {
            "uid": "itest-update", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "UPDATE",
            "namespace": APPS, "name": "itest-gmsa-update", "object": changed, "oldObject": created,
            "userInfo": {"username": "itest"},
        })
        assert response["allowed"] is False and response["uid"] == "itest-update"
        assert response["status"]["message"] == 'cannot update an existing pod\'s GMSA settings (GMSA name modified on pod "itest-gmsa-update")'
    finally:
        kubectl(lab, "delete", "pod", "-n", APPS, "itest-gmsa-update", "--ignore-not-found", "--wait=false")


def ask_webhook(served, path, request):
    """POST an AdmissionReview to a served webhook pod, from inside its network namespace; return its response."""
    address = served["addresses"][0]
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    command = netns.command_in(served["netns"][address], [
        "curl", "-sk", "--noproxy", "*", "--max-time", "10", "-H", "Content-Type: application/json", "--data-binary", "@-",
        "https://%s:%s%s" % (address, served["port"], path),
    ])
    result = subprocess.run(command, input=json.dumps(review), capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["response"]


def _ca_bundle(lab):
    return kubectl_json(lab, "get", "validatingwebhookconfiguration", NAME)["webhooks"][0]["clientConfig"]["caBundle"]


def test_certificate_renewal_keeps_admission_working_without_a_new_ca_bundle(lab, installed):
    bundle = _ca_bundle(lab)
    old_cert = kubectl_json(lab, "get", "secret", "-n", NAMESPACE, NAME + "-tls")["data"]["tls.crt"]
    renewal = run_play(lab, [webhook_task(tls={"renew_before_days": 400}, wait=False)])
    assert renewal.rc == 0, renewal.output
    assert renewal.result["certificate"]["renewed"] and "renewal window" in renewal.result["certificate"]["reason"]
    assert kubectl_json(lab, "get", "secret", "-n", NAMESPACE, NAME + "-tls")["data"]["tls.crt"] != old_cert
    assert _ca_bundle(lab) == bundle
    # The renewal rolled the Deployment; the lab kubelet serves its new pods once they are Ready.
    webhook.wait_serving(lab, NAMESPACE, NAME)
    verify = run_play(lab, [webhook_task()])
    assert verify.rc == 0, verify.output
    assert verify.result["admission"] == "the webhook refused a pod naming a missing credspec"
    pod, error = dry_run_pod(lab, "allowed", "itestapp")
    assert error is None and pod


def test_reinstall_and_upgrade_keep_credspecs(lab, installed):
    uid = kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["metadata"]["uid"]
    play = run_play(lab, [webhook_task(log_level="debug", timeout_seconds=15)])
    assert play.rc == 0, play.output
    assert {"object": "CustomResourceDefinition " + CRD_KEY[2], "action": "unchanged"} in play.result["objects"]
    assert kubectl_json(lab, "get", "gmsacredentialspec", "itestapp")["metadata"]["uid"] == uid


def test_crd_removal_is_refused_while_credspecs_exist(lab, installed):
    play = run_play(lab, [webhook_task(state="absent", remove_crd=True)])
    assert play.rc != 0
    assert "refusing to delete CRD " + CRD_KEY[2] in play.result["msg"] and "itestapp" in play.result["msg"]
    kubectl(lab, "get", "validatingwebhookconfiguration", NAME)


def test_uninstall_leaves_the_cluster_as_before(lab, installed):
    removal = run_play(lab, [credspec_task([ITEST_APP], state="absent")])
    assert removal.rc == 0, removal.output
    # The CRD stays: other suites sharing the lab may hold credspecs (the fixture removes it if it can).
    uninstall = run_play(lab, [webhook_task(state="absent")])
    assert uninstall.rc == 0, uninstall.output
    assert {entry["action"] for entry in uninstall.result["objects"]} == {"deleted"}
    # The apps namespace and its service accounts are the suite's own, removed by the fixture.
    leftovers = None
    deadline = time.monotonic() + 60
    while leftovers is None or (leftovers and time.monotonic() < deadline):
        time.sleep(0 if leftovers is None else 1)  # namespaces terminate asynchronously
        leftovers = {key for key in ours(snapshot(lab)) - ours(lab["before"]) if APPS not in (key[1], key[2]) and key != CRD_KEY}
    assert not leftovers
