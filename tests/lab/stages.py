"""kwok Stages for the lab: kwok's defaults, except that windows-gmsa webhook pods are Ready only when they serve.

kwok sets pod and node status from Stage resources. kwokctl passes kwok its defaults (node-initialize, node
heartbeat with lease, pod-ready, pod-complete, pod-delete from kustomize/stage/.../fast) only when its config
holds no Stage at all (sigs.k8s.io/kwok@v0.8.0 pkg/kwokctl/runtime/cluster.go, getDefaultNodeStages and
getDefaultPodStages): the lab's config gives them all, read from the kwok module the lab builds, with two changes:

- kwok's pod-ready skips webhook pods;
- a webhook pod (a container image named k8s-gmsa-webhook) gets kwok's pod-ready status (pod IP, phase Running)
  but not Ready, so the Service routes nothing to it; it turns Ready when the lab kubelet (tests/lab/webhook.py)
  has seen its /health answer and set the SERVING annotation, and not Ready again when that annotation goes;
- kwok's pod-delete skips a webhook pod the lab kubelet serves: as a node's kubelet does, the lab kubelet removes
  the pod object only once its container has stopped (after its preStop hook), so the pod's IP and its bound
  service account token stay valid while it drains.

A status template patches a Pod as a strategic merge patch (pkg/utils/lifecycle/next.go, computePatch), so the
later stages list only the conditions and container statuses they change (merged by type and by name).
"""

import json
import os
import subprocess

import yaml

from tests.lab import build

# Set by the lab kubelet on a webhook pod whose /health answered; kwok turns it Ready then (see module doc).
SERVING_ANNOTATION = "lab.wincontainers.gmsa/serving"
# The image name the webhook's Deployment runs, whatever the registry and tag (upstream's chart, deploy script,
# the collection): registry.k8s.io/gmsa-webhook/k8s-gmsa-webhook:v0.13.0.
WEBHOOK_IMAGE_NAME = "k8s-gmsa-webhook"
# Node stages as kwokctl configures them by default (NodeStatusUpdateFrequencyMilliseconds 10000, lease 40 s).
HEARTBEAT_MILLISECONDS = 10000
DEFAULT_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


class StageError(Exception):
    """kwok's default stages could not be read or no longer look as this module expects."""


def is_webhook_image(image):
    """Whether image names the windows-gmsa webhook (any registry, tag or digest)."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name == WEBHOOK_IMAGE_NAME


# The same test as is_webhook_image, as a kwok selector key (a jq query, pkg/utils/expression/selector.go:
# In/NotIn compare its string results).
WEBHOOK_POD_KEY = '[.spec.containers.[].image | split("/") | last | split("@") | first | split(":") | first] | any(. == "%s")' % (
    WEBHOOK_IMAGE_NAME
)
NOT_DELETING = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
READY_KEY = '.status.conditions.[] | select( .type == "Ready" ) | .status'
# A webhook pod the lab kubelet serves: its deletion is the lab kubelet's to finish.
SERVED_WEBHOOK_POD_KEY = '(%s) and (.metadata.annotations["%s"] == "true")' % (WEBHOOK_POD_KEY, SERVING_ANNOTATION)


def _kwok_module_dir():
    tool = next(tool for tool in build.TOOLS if tool.name == "kwok")
    command = ["go", "mod", "download", "-json", "%s@%s" % (tool.upstream, build.pinned_version(tool))]
    result = subprocess.run(command, cwd=build.module_dir(tool), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StageError("cannot locate the kwok module for its default stages: %s" % (result.stderr or result.stdout).strip())
    return json.loads(result.stdout)["Dir"]


def _replace_once(text, old, new, stage):
    if text.count(old) < 1:
        raise StageError("kwok's %s stage changed: %r not found in its status template" % (stage, old))
    return text.replace(old, new, 1)


def _status_not_ready(template):
    """kwok's pod-ready status template, with the pod and its containers not ready."""
    for condition in ("Ready", "ContainersReady"):
        template = _replace_once(template, 'status: "True"\n  type: %s\n' % condition, 'status: "False"\n  type: %s\n' % condition, "pod-ready")
    return _replace_once(template, "ready: true", "ready: false", "pod-ready")


def _readiness_template(ready):
    status, flag = ('"True"', "true") if ready else ('"False"', "false")
    return "\n".join([
        "{{ $now := Now }}",
        "conditions:",
        "- lastTransitionTime: {{ $now | Quote }}",
        "  status: %s" % status,
        "  type: Ready",
        "- lastTransitionTime: {{ $now | Quote }}",
        "  status: %s" % status,
        "  type: ContainersReady",
        "containerStatuses:",
        "{{ range .spec.containers }}",
        "- name: {{ .name | Quote }}",
        "  image: {{ .image | Quote }}",
        "  ready: %s" % flag,
        "{{ end }}",
        "",
    ])


def _stage(name, expressions, status_template):
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": expressions},
            "next": {"statusTemplate": status_template},
        },
    }


def webhook_stages(pod_ready):
    """The three stages of a webhook pod, from kwok's pod-ready stage."""
    is_webhook = {"key": WEBHOOK_POD_KEY, "operator": "In", "values": ["true"]}
    running = {"key": ".status.phase", "operator": "In", "values": ["Running"]}
    serving = {"key": '.metadata.annotations["%s"]' % SERVING_ANNOTATION, "operator": "In", "values": ["true"]}
    start = pod_ready["spec"]["selector"]["matchExpressions"] + [is_webhook]
    return [
        _stage("wgmsa-webhook-pod-start", start, _status_not_ready(pod_ready["spec"]["next"]["statusTemplate"])),
        _stage(
            "wgmsa-webhook-pod-ready",
            [NOT_DELETING, running, is_webhook, serving, {"key": READY_KEY, "operator": "NotIn", "values": ["True"]}],
            _readiness_template(True),
        ),
        _stage(
            "wgmsa-webhook-pod-unready",
            [NOT_DELETING, running, is_webhook, dict(serving, operator="NotIn"), {"key": READY_KEY, "operator": "In", "values": ["True"]}],
            _readiness_template(False),
        ),
    ]


def lab_stages(kwok_dir=None):
    """Every Stage the lab's kwok runs with."""
    kwok_dir = kwok_dir or _kwok_module_dir()
    stages = []
    for relative in DEFAULT_STAGE_FILES:
        with open(os.path.join(kwok_dir, "kustomize", "stage", relative), encoding="utf-8") as stage_file:
            stages.append(yaml.safe_load(stage_file))
    by_name = {stage["metadata"]["name"]: stage for stage in stages}
    # kwokctl lengthens the heartbeat's delay to the node status update frequency (getDefaultNodeStages).
    delay = by_name["node-heartbeat-with-lease"]["spec"]["delay"]
    delay["durationMilliseconds"] = max(delay.get("durationMilliseconds", 0), HEARTBEAT_MILLISECONDS)
    delay["jitterDurationMilliseconds"] = max(delay.get("jitterDurationMilliseconds", 0), HEARTBEAT_MILLISECONDS * 11 // 10)
    pod_ready = by_name["pod-ready"]
    webhook = webhook_stages(pod_ready)
    pod_ready["spec"]["selector"]["matchExpressions"].append({"key": WEBHOOK_POD_KEY, "operator": "NotIn", "values": ["true"]})
    by_name["pod-delete"]["spec"]["selector"]["matchExpressions"].append({"key": SERVED_WEBHOOK_POD_KEY, "operator": "NotIn", "values": ["true"]})
    return stages + webhook
