# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_workload on the lab: the real StatefulSet and DaemonSet controllers roll the workloads out, kwok plays the
kubelet of the Windows node (no Windows container runs). The module runs through ansible-playbook, as users run it.

    python -m pytest tests/integration/test_workload_module.py -v
"""

import json

import pytest

from tests.integration.support import kubectl, kubectl_json, run_play

pytest_plugins = ("tests.lab.pytest_kube",)

NAMESPACE = "itest-workload"
POD_TEMPLATE = {
    "spec": {"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}]},
}


def workload(kind, name, **spec):
    template = dict(POD_TEMPLATE, metadata={"labels": {"app": name}})
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": dict(spec, selector={"matchLabels": {"app": name}}, template=template),
    }


STATEFULSET = workload("StatefulSet", "itest-wl-sts", replicas=2, serviceName="itest-wl-sts")
DAEMONSET = workload("DaemonSet", "itest-wl-ds")
FOREIGN = workload("Deployment", "itest-wl-theirs", replicas=1)


def task(definition, **options):
    return {"wincontainers.gmsa.gmsa_workload": dict(options, definition=definition, wait_timeout=120), "ignore_errors": True}


@pytest.fixture(name="lab", scope="module")
def fixture_lab(kube_lab):
    kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    kubectl(kube_lab, "create", "namespace", NAMESPACE)
    # Someone else's Deployment, made with kubectl: the module must neither take it over nor delete it.
    kubectl(kube_lab, "create", "-f", "-", stdin=json.dumps(FOREIGN))
    # Its controllers write its status until it has rolled out: the test's reference resourceVersion is taken after.
    kubectl(kube_lab, "rollout", "status", "deployment", FOREIGN["metadata"]["name"], "-n", NAMESPACE, "--timeout=120s")
    yield kube_lab
    kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def test_statefulset_and_daemonset_roll_out_and_someone_elses_deployment_is_left_alone(lab):
    theirs = kubectl_json(lab, "get", "deployment", FOREIGN["metadata"]["name"], "-n", NAMESPACE)["metadata"]
    play = run_play(lab, [task(STATEFULSET), task(DAEMONSET), task(STATEFULSET), task(FOREIGN)])
    assert play.rc == 0, play.output[-3000:]
    statefulset, daemonset, rerun, foreign = play.results

    assert statefulset["changed"] and not statefulset.get("failed"), statefulset
    assert statefulset["rollout"] == "2 of 2 replicas ready"
    assert sorted(pod["name"] for pod in statefulset["pods"]) == ["itest-wl-sts-0", "itest-wl-sts-1"]
    assert {pod["node"] for pod in statefulset["pods"]} == {"lab-win-0"}
    # One Windows node, so one pod of the DaemonSet; the Linux node does not match its node selector.
    assert daemonset["rollout"] == "1 of 1 scheduled pods available", daemonset
    assert [pod["node"] for pod in daemonset["pods"]] == ["lab-win-0"]
    assert rerun["changed"] is False and rerun["objects"] == [{"object": f"StatefulSet {NAMESPACE}/itest-wl-sts", "action": "unchanged"}]

    assert foreign["failed"] and "exists and was not created by this collection" in foreign["msg"], foreign
    after = kubectl_json(lab, "get", "deployment", FOREIGN["metadata"]["name"], "-n", NAMESPACE)["metadata"]
    assert (after["resourceVersion"], after.get("labels")) == (theirs["resourceVersion"], theirs.get("labels"))


def test_absent_removes_only_the_collections_workloads_and_waits_for_their_pods(lab):
    play = run_play(lab, [task(STATEFULSET, state="absent"), task(DAEMONSET, state="absent"), task(FOREIGN, state="absent")])
    assert play.rc == 0, play.output[-3000:]
    statefulset, daemonset, foreign = play.results
    assert statefulset["changed"] and statefulset["rollout"] == "the workload and its pods are gone", statefulset
    assert daemonset["changed"] and daemonset["rollout"] == "the workload and its pods are gone", daemonset
    assert foreign["changed"] is False and foreign["objects"] == [{"object": f"Deployment {NAMESPACE}/itest-wl-theirs", "action": "kept"}]
    left = kubectl_json(lab, "get", "statefulsets,daemonsets,deployments,pods", "-n", NAMESPACE)["items"]
    assert sorted({item["kind"] for item in left}) == ["Deployment", "Pod"], left
    assert all(item["metadata"]["name"].startswith("itest-wl-theirs") for item in left), left
