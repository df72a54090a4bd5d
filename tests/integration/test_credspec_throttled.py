"""gmsa_credspec under API priority and fairness throttling, on the lab's real API server.

A PriorityLevelConfiguration of about three seats that rejects instead of queueing, and a FlowSchema sending a
service account's requests there: the module, run as that account, writes 60 credspecs (240 objects) eight at a
time, is answered 429 with Retry-After (k8s.io/apiserver pkg/server/filters/priority-and-fairness.go), sends those
requests again after the time asked for, and converges; the API server's own metric counts the rejections.

    python -m pytest tests/integration/test_credspec_throttled.py -v      # from the repository root, as root
"""

import json
import os
import re

import pytest
import yaml

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd
from test_cluster_gmsa import DOMAIN, IDENTITY, kubectl, kubectl_json, run_play

pytest_plugins = ("tests.lab.pytest_kube",)

NAME = "itest-throttled"
COUNT = 60
REJECTED = re.compile(r'^apiserver_flowcontrol_rejected_requests_total\{[^}]*priority_level="%s"[^}]*\} (\d+)' % NAME, re.M)


@pytest.fixture(name="lab")
def fixture_lab(kube_lab):
    """The lab with the GMSACredentialSpec CRD; the CRD goes again afterwards if this test brought it and it is empty."""
    had_crd = bool(kubectl_json(kube_lab, "get", "crd", "--field-selector", "metadata.name=gmsacredentialspecs.windows.k8s.io")["items"])
    kubectl(kube_lab, "apply", "--server-side", "--field-manager=itest", "-f", "-", stdin=json.dumps(crd()))
    kubectl(kube_lab, "wait", "--for=condition=Established", "crd/gmsacredentialspecs.windows.k8s.io", "--timeout=60s")
    yield kube_lab
    if not had_crd and not kubectl_json(kube_lab, "get", "gmsacredentialspecs")["items"]:
        kubectl(kube_lab, "delete", "crd", "gmsacredentialspecs.windows.k8s.io", "--ignore-not-found")


@pytest.fixture(name="throttled_kubeconfig")
def fixture_throttled_kubeconfig(lab, tmp_path):
    """A kubeconfig for a service account whose requests go to a priority level that rejects what exceeds it."""
    kubectl(lab, "create", "namespace", NAME)
    kubectl(lab, "create", "serviceaccount", "-n", NAME, "writer")
    kubectl(lab, "create", "clusterrolebinding", NAME, "--clusterrole=cluster-admin", f"--serviceaccount={NAME}:writer")
    flow_control = [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": NAME},
            # 1 share of about 250: 3 of the server's 600 seats, none borrowed, nothing queued.
            "spec": {
                "type": "Limited",
                "limited": {"nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}},
            },
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": NAME},
            "spec": {
                "matchingPrecedence": 500,
                "priorityLevelConfiguration": {"name": NAME},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{
                    "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": "writer", "namespace": NAME}}],
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True, "namespaces": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }],
            },
        },
    ]
    kubectl(lab, "apply", "--server-side", "--field-manager=itest", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": flow_control}))
    token = kubectl(lab, "create", "token", "-n", NAME, "writer", "--duration=1h").strip()
    with open(lab["kubeconfig"], encoding="utf-8") as admin:
        config = yaml.safe_load(admin)
    config["users"] = [{"name": "writer", "user": {"token": token}}]
    config["contexts"] = [{"name": "writer", "context": {"cluster": config["clusters"][0]["name"], "user": "writer"}}]
    config["current-context"] = "writer"
    path = str(tmp_path / "writer.kubeconfig")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as kubeconfig:
        yaml.safe_dump(config, kubeconfig)
    yield path
    run_play(lab, [{"wincontainers.gmsa.gmsa_credspec": {"state": "absent", "credspecs": _credspecs()}}])
    for kind in ("flowschema", "prioritylevelconfiguration", "clusterrolebinding", "namespace"):
        kubectl(lab, "delete", kind, NAME, "--ignore-not-found")


def _credspecs():
    return [
        {
            "account_name": f"ItestThr{index:02d}",
            "service_accounts": [{"name": "app", "namespace": NAME}],
            "identity_secret": {"name": f"itest-thr-{index:02d}"},
        }
        for index in range(COUNT)
    ]


def _rejected(lab):
    return sum(int(count) for count in REJECTED.findall(kubectl(lab, "get", "--raw", "/metrics")))


def test_throttled_writes_are_sent_again_and_converge(lab, throttled_kubeconfig):
    rejected_before = _rejected(lab)
    task = {"wincontainers.gmsa.gmsa_credspec": {"kubeconfig": throttled_kubeconfig, "domain": DOMAIN, "identity": IDENTITY, "credspecs": _credspecs()}}
    play = run_play(lab, [task])
    assert play.rc == 0, play.output
    assert [entry["action"] for entry in play.result["objects"]] == ["created"] * (4 * COUNT)
    assert _rejected(lab) > rejected_before, "the priority level rejected nothing: the test proves nothing"
    assert len(kubectl_json(lab, "get", "rolebindings", "-n", NAME)["items"]) == COUNT
    rerun = run_play(lab, [task])
    assert rerun.rc == 0, rerun.output
    assert not rerun.result["changed"]
