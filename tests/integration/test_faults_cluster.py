"""Cluster-side faults, each on a cluster of this module's own: the lab's shared control plane is never stopped.

A module-scoped fixture starts a full control plane beside the lab's (tests/lab/fleet.py: etcd, kube-apiserver,
controllers, kwok nodes and the lab kubelet running the real webhook for webhook pods) and removes it after.
The faults are real: signals to the real kube-apiserver and etcd processes, objects deleted or replaced with
kubectl as a user would. Every case ends with a rerun that converges (a second rerun changes nothing) and a
count of the collection's objects: each exactly once, none left over.

Faults (what the user sees; what the rerun did):

- The webhook's image is one the nodes never run (a tag the lab kubelet does not serve).
  Sees: `Deployment NS/NAME not ready after N s: ...`; no webhook configuration was registered, so no pod is refused.
  Rerun: with a runnable image, rolls the Deployment, registers admission and probes it; the next run changes nothing.
- The webhook's serving certificate expired (the Secret holds an expired one, the pods restarted).
  Sees: pods refused, `x509: certificate has expired` from the API server calling the webhook.
  Rerun: renews (the reason names the expiry), rolls the pods; admission answers; the next run changes nothing.
- The webhook's CA Secret deleted by hand.
  Sees: nothing until the next run (the pods keep their certificate).
  Rerun: a new CA; the configurations trust it and, until the pods roll, the CA they trusted before (fixed: before,
  only the new one, so pods still serving the old certificate were refused); admission answers.
- kube-apiserver or etcd stopped (SIGSTOP, 5 s) mid-batch.
  Sees: the run pauses and succeeds.  Rerun: changes nothing; every object once.
- kube-apiserver killed (SIGKILL) mid-batch, then restarted.
  Sees: `... cannot reach the Kubernetes API server at https://127.0.0.1:PORT: ...`, changed=true, the objects done.
  Rerun: created the rest; every object once; the run after it changes nothing.
- The GMSACredentialSpec CRD deleted by hand while credspecs existed.
  Sees: gmsa_credspec: the CRD is not installed and `credspecs A, B were deleted with it (their ClusterRoles
  remain)`; gmsa_webhook recreates the CRD and warns which credspecs to recreate (fixed: before, neither said it).
  Rerun: gmsa_credspec recreated the credspecs; the grants and the identity Secret were kept (same uids). Removal
  after the loss also removes the identity Secret (fixed: before, it stayed, as the credspec recording it was gone).

    python -m pytest tests/integration/test_faults_cluster.py -v     # from the repository root, as root
"""

import base64
import datetime
import json
import os
import signal
import threading
import time

import kubernetes
import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls
from tests.integration.support import kubectl, kubectl_json, own_cluster, run_play
from tests.lab import kube, webhook

CLUSTER = "faults"
APPS = "faults-apps"
WEBHOOK = {"name": "faults-webhook", "namespace": "faults-webhook", "wait_timeout": 120, "probe_namespace": APPS}
DOMAIN = {"dns_name": "faults.example", "netbios_name": "FAULTS", "sid": "S-1-5-21-1004336348-1177238915-682003331",
          "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4f"}
IDENTITY = {"username": "faults-portable", "password": "Faults-Portable-Pa55w0rd!"}
# Enough entries that a signal sent once the first credspec exists lands in the middle of the batch.
BATCH = [
    {"account_name": "Fault%02d" % number, "service_accounts": [{"name": "app", "namespace": APPS}], "identity_secret": {"name": "faults-identity"}}
    for number in range(16)
]
# What gmsa_credspec makes (the webhook's objects are left out: they carry other app.kubernetes.io/name values).
MANAGED = "app.kubernetes.io/managed-by=wincontainers.gmsa,app.kubernetes.io/name in (gmsa-credspec,gmsa-identity)"
CREDSPEC_KINDS = "gmsacredentialspecs,clusterroles,rolebindings,secrets"
PAUSE_SECONDS = 5


@pytest.fixture(name="lab", scope="module")
def fixture_lab():
    with own_cluster(CLUSTER) as facts:
        kubectl(facts, "create", "namespace", APPS)
        kubectl(facts, "create", "serviceaccount", "-n", APPS, "app")
        yield facts


def webhook_task(**options):
    return {"wincontainers.gmsa.gmsa_webhook": dict(WEBHOOK, **options)}


def credspec_task(credspecs, **options):
    return {"wincontainers.gmsa.gmsa_credspec": dict({"domain": DOMAIN, "identity": IDENTITY, "credspecs": credspecs}, **options)}


@pytest.fixture(name="installed", scope="module")
def fixture_installed(lab):
    """The webhook and the CRD, installed (or found installed) on the suite's cluster; each test leaves it converged."""
    play = run_play(lab, [webhook_task()])
    assert play.rc == 0, play.output
    return play.result


def managed_objects(lab, kinds=CREDSPEC_KINDS):
    """{(kind, namespace, name): uid} of every object the collection labelled as its own, of ``kinds``."""
    items = kubectl_json(lab, "get", kinds, "--all-namespaces", "-l", MANAGED)["items"]
    return {(item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]): item["metadata"]["uid"] for item in items}


def credspec_names(lab):
    return sorted(item["metadata"]["name"] for item in kubectl_json(lab, "get", "gmsacredentialspecs")["items"])


def expected_names():
    return sorted(entry["account_name"].lower() for entry in BATCH)


def assert_converged(lab, objects_before_fault=None):
    """A rerun changes nothing, and the cluster holds the batch's objects once each, none other."""
    rerun = run_play(lab, [credspec_task(BATCH)])
    assert rerun.rc == 0 and not rerun.result["changed"], rerun.output
    objects = managed_objects(lab)
    reported = {entry["object"] for entry in rerun.result["objects"]}
    assert {"%s %s" % (kind, "%s/%s" % (namespace, name) if namespace else name) for kind, namespace, name in objects} == reported
    assert credspec_names(lab) == expected_names()
    if objects_before_fault is not None:
        assert set(objects) == set(objects_before_fault)
    return objects


def remove_batch(lab):
    play = run_play(lab, [credspec_task(BATCH, state="absent")])
    assert play.rc == 0, play.output
    assert managed_objects(lab) == {}, play.result["objects"]


def signal_mid_batch(lab, component, fault):
    """Run the batch in a thread and call fault(pid of component) as its first RoleBinding is created.

    gmsa_credspec writes the RoleBindings last (a binding needs its role), so at that moment every credspec and
    ClusterRole exists and the bindings are being written: the middle of the batch. Returns the play.
    """
    rbac = kubernetes.client.RbacAuthorizationV1Api(kubernetes.config.new_client_from_config(lab["kubeconfig"]))
    since = rbac.list_namespaced_role_binding(APPS, label_selector=MANAGED).metadata.resource_version
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(play=run_play(lab, [credspec_task(BATCH)]), finished=time.monotonic()))
    runner.start()
    seen = 0
    try:
        events = kubernetes.watch.Watch()
        for event in events.stream(rbac.list_namespaced_role_binding, APPS, label_selector=MANAGED, resource_version=since, timeout_seconds=60):
            if event["type"] == "ADDED":
                seen += 1
                break
        events.stop()
        assert seen, "the batch wrote no RoleBinding within 60 s"
        fault(kube.component_pid(lab["state_dir"], lab["cluster"], component))
        fault_over = time.monotonic()
    finally:
        runner.join()
    # A batch that ended before the fault was over never met it.
    assert seen < len(BATCH) and outcome["finished"] > fault_over, "the fault did not strike mid-batch"
    return outcome["play"]


def pause(pid):
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_SECONDS)
    finally:
        os.kill(pid, signal.SIGCONT)


def dry_run_pod(lab):
    """A gMSA pod created as a server-side dry run: None when admitted, else why it was refused."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "faults-probe", "namespace": APPS},
        "spec": {"serviceAccountName": "app", "nodeSelector": {"kubernetes.io/os": "windows"},
                 "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "fault00"}},
                 "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022"}]},
    }
    try:
        kubectl(lab, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
        return None
    except kube.LabError as error:
        return str(error)


# --- the webhook --------------------------------------------------------------------------------------------


def test_a_webhook_that_never_becomes_ready_names_it_and_a_rerun_with_a_runnable_image_converges(lab):
    # The lab kubelet runs only the tag it built (webhook.runnable_image): this one stays not Ready, as an image
    # a node cannot pull does.
    image = "registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.0.0-faults"
    assert not webhook.runnable_image(image)
    play = run_play(lab, [webhook_task(image=image, wait_timeout=10)])
    assert play.rc != 0
    assert play.result["msg"].startswith("Deployment %s/%s not ready after 10 s: " % (WEBHOOK["namespace"], WEBHOOK["name"])), play.result["msg"]
    # Admission was never pointed at pods that do not serve, so the cluster's pods are not refused meanwhile.
    assert "WebhookConfiguration" not in json.dumps(play.result["objects"])
    assert dry_run_pod(lab) is None

    rerun = run_play(lab, [webhook_task()])
    assert rerun.rc == 0, rerun.output
    assert rerun.result["admission"] == "the webhook refused a pod naming a missing credspec"
    deployments = kubectl_json(lab, "get", "deployments", "-n", WEBHOOK["namespace"])["items"]
    assert [item["metadata"]["name"] for item in deployments] == [WEBHOOK["name"]]
    assert not run_play(lab, [webhook_task()]).result["changed"]


def stored_pair(lab, secret):
    data = kubectl_json(lab, "get", "secret", "-n", WEBHOOK["namespace"], secret)["data"]
    return _tls.KeyPair(cert=base64.b64decode(data["tls.crt"]).decode(), key=base64.b64decode(data["tls.key"]).decode())


def restart_webhook_pods(lab):
    """Delete the webhook's pods, as a node drain would: the new ones read the Secret as it is now."""
    kubectl(lab, "delete", "pods", "-n", WEBHOOK["namespace"], "-l", "app.kubernetes.io/instance=" + WEBHOOK["name"], "--wait")
    kubectl(lab, "rollout", "status", "deployment/" + WEBHOOK["name"], "-n", WEBHOOK["namespace"], "--timeout=90s")
    webhook.wait_serving(lab, WEBHOOK["namespace"], WEBHOOK["name"])


@pytest.mark.usefixtures("installed")
def test_an_expired_serving_certificate_refuses_pods_until_a_rerun_renews_it(lab):
    secret = WEBHOOK["name"] + "-tls"
    ca = stored_pair(lab, WEBHOOK["name"] + "-ca")
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    expired = _tls.new_server_cert(ca, _tls.service_dns_names(WEBHOOK["name"], WEBHOOK["namespace"]), long_ago, datetime.timedelta(days=1))
    patch = {"data": {"tls.crt": base64.b64encode(expired.cert.encode()).decode(), "tls.key": base64.b64encode(expired.key.encode()).decode()}}
    kubectl(lab, "patch", "secret", "-n", WEBHOOK["namespace"], secret, "--type=merge", "-p", json.dumps(patch))
    restart_webhook_pods(lab)
    refusal = dry_run_pod(lab)
    assert refusal is not None and "certificate has expired" in refusal, refusal

    rerun = run_play(lab, [webhook_task()])
    assert rerun.rc == 0, rerun.output
    assert rerun.result["certificate"]["renewed"] and "expires on" in rerun.result["certificate"]["reason"], rerun.result["certificate"]
    # The webhook answers again: it refuses the pod for its own reason (no credspec fault00 exists now).
    answer = dry_run_pod(lab)
    assert answer is not None and "fault00 does not exist" in answer and "certificate" not in answer, answer
    assert not run_play(lab, [webhook_task()]).result["changed"]


@pytest.mark.usefixtures("installed")
def test_a_deleted_ca_secret_is_replaced_and_the_old_ca_trusted_until_the_pods_roll(lab):
    old_ca = stored_pair(lab, WEBHOOK["name"] + "-ca").cert
    kubectl(lab, "delete", "secret", "-n", WEBHOOK["namespace"], WEBHOOK["name"] + "-ca")
    rerun = run_play(lab, [webhook_task()])
    assert rerun.rc == 0, rerun.output
    assert rerun.result["certificate"]["reason"] == "the server certificate was not issued by the current CA"
    new_ca = stored_pair(lab, WEBHOOK["name"] + "-ca")
    assert new_ca.cert != old_ca
    configuration = kubectl_json(lab, "get", "validatingwebhookconfiguration", WEBHOOK["name"])
    bundle = base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    # The old CA stays trusted (as previous.crt), so pods not yet rolled were never refused.
    assert new_ca.cert in bundle and old_ca in bundle
    assert rerun.result["admission"] == "the webhook refused a pod naming a missing credspec"
    assert not run_play(lab, [webhook_task()]).result["changed"]


# --- the API server and etcd under a batch ------------------------------------------------------------------


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_control_plane_process_paused_mid_batch_only_slows_the_run(lab, component):
    play = signal_mid_batch(lab, component, pause)
    try:
        assert play.rc == 0, play.output
        assert_converged(lab)
    finally:
        remove_batch(lab)


@pytest.mark.usefixtures("installed")
def test_an_api_server_killed_mid_batch_fails_clearly_and_a_rerun_after_its_restart_completes_the_batch(lab):
    """The restart comes right after the kill, while the killed process may still be a zombie that kwokctl would
    take for running: kube.up starts it anyway (kube._forget_stopped_components), as a kubelet would."""
    try:
        play = signal_mid_batch(lab, "kube-apiserver", lambda pid: os.kill(pid, signal.SIGKILL))
        assert play.rc != 0
        assert "cannot reach the Kubernetes API server at %s" % lab["server"] in play.result["msg"], play.result["msg"]
        assert play.result["changed"] is True and play.result["objects"]
        kube.up(lab["state_dir"], lab["cluster"])  # starts what does not run
        rerun = run_play(lab, [credspec_task(BATCH)])
        assert rerun.rc == 0, rerun.output
        assert_converged(lab)
    finally:
        kube.up(lab["state_dir"], lab["cluster"])
        remove_batch(lab)


# --- the CRD ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("installed")
def test_a_crd_deleted_by_hand_is_recreated_saying_which_credspecs_were_lost_and_a_rerun_restores_them(lab):
    play = run_play(lab, [credspec_task(BATCH)])
    assert play.rc == 0, play.output
    before = managed_objects(lab)
    try:
        kubectl(lab, "delete", "crd", "gmsacredentialspecs.windows.k8s.io", "--wait")
        lost = ", ".join(expected_names())

        refused = run_play(lab, [credspec_task(BATCH)])
        assert refused.rc != 0
        assert "the GMSACredentialSpec CRD (gmsacredentialspecs.windows.k8s.io) is not installed" in refused.result["msg"]
        assert "credspecs %s were deleted with it" % lost in refused.result["msg"], refused.result["msg"]

        reinstall = run_play(lab, [webhook_task()])
        assert reinstall.rc == 0, reinstall.output
        assert {"object": "CustomResourceDefinition gmsacredentialspecs.windows.k8s.io", "action": "created"} in reinstall.result["objects"]
        assert any("credspecs %s were deleted with it" % lost in warning for warning in reinstall.result["warnings"]), reinstall.result

        restored = run_play(lab, [credspec_task(BATCH)])
        assert restored.rc == 0 and restored.result["changed"], restored.output
        after = assert_converged(lab)
        # The grants and the identity Secret were kept, not made anew; only the credspecs are new objects.
        assert {key: uid for key, uid in after.items() if key[0] != "GMSACredentialSpec"} == {
            key: uid for key, uid in before.items() if key[0] != "GMSACredentialSpec"}
        assert set(after) == set(before)
    finally:
        remove_batch(lab)
