#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_workload
short_description: Apply a Windows workload that runs as a gMSA, wait for its rollout and report its pods
version_added: 0.1.0
description:
  - Server-side applies O(definition), a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, with the
    field manager C(wincontainers.gmsa) and the label C(app.kubernetes.io/managed-by=wincontainers.gmsa). Wire it for
    the gMSA first with the P(wincontainers.gmsa.with_gmsa#filter) filter.
  - A workload of that name that exists without the label was not made by the collection. The module refuses it before
    changing anything, rather than take it over. To hand it to the collection, label it so.
  - A rerun that would change nothing sends no write. The module reads the object and compares it with the manifest
    and the digest of the manifest it last applied, so it also sees fields removed from the manifest.
  - With O(wait), waits until the rollout is done as C(kubectl rollout status) decides, then reports the pods and the
    nodes they run on. A Job or CronJob has no rollout, so it is applied without a wait.
  - With O(state=absent), deletes the workload only if it carries the label, then waits until it and its pods are
    gone.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
  - wincontainers.gmsa.cluster_requests
options:
  definition:
    description:
      - The workload manifest, with C(apiVersion), C(kind), C(metadata.name) and C(metadata.namespace).
      - Kinds, by C(apiVersion) C(apps/v1) or C(batch/v1) - Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
        CronJob.
    type: dict
    required: true
  state:
    description: V(present) applies the workload, V(absent) deletes it when the collection created it.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description:
      - With O(state=present), wait until the rollout is done (Deployment, StatefulSet, DaemonSet) and report the pods.
      - With O(state=absent), wait until the workload and its pods are gone.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait; the module fails after it, naming what is not ready.
    type: int
    default: 300
seealso:
  - module: wincontainers.gmsa.gmsa_credspec
  - module: wincontainers.gmsa.gmsa_service_accounts
  - plugin: wincontainers.gmsa.with_gmsa
    plugin_type: filter
requirements:
  - kubernetes >= 24.2.0
attributes:
  check_mode:
    support: full
    details:
      - Server-side dry run. A workload whose namespace the same run would create cannot be dry-run; it is predicted,
        with a warning. Nothing is waited for.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
# Fragments: the credspec webapp01, its service account and namespace must exist (the credspecs role makes them).
- name: Deploy a Windows Deployment whose pods run as the gMSA of credspec webapp01
  wincontainers.gmsa.gmsa_workload:
    definition: "{{ lookup('ansible.builtin.file', 'iis.yaml') | from_yaml
                    | wincontainers.gmsa.with_gmsa(credspec='webapp01', service_account='webapp01',
                                                   dns_servers=['10.0.0.4'], domain='contoso.com') }}"
  register: deployed

- name: Say where its pods run
  ansible.builtin.debug:
    msg: "{{ deployed.pods | map(attribute='name') | zip(deployed.pods | map(attribute='node')) | map('join', ' on ') }}"

- name: Remove it, if the collection created it
  wincontainers.gmsa.gmsa_workload:
    state: absent
    definition:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: iis, namespace: web}
"""

RETURN = r"""
objects:
  description: The workload, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {object: Deployment web/iis, action: unchanged}
rollout:
  description: What the wait found (empty when nothing was waited for).
  returned: always
  type: str
  sample: 2 of 2 replicas ready
pods:
  description: With O(state=present) and O(wait), the workload's pods (its selector's C(matchLabels)) that are not
    being deleted, with the node each runs on (null until scheduled).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: iis-54b85b94c-klqkp, node: akswin000001, phase: Running, ready: true}
"""

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import Conflict, Reconciler, is_managed
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import (
    KINDS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ApiError,
    Cluster,
    cluster_module,
    object_ref,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._waiter import ROLLOUT_STATUS, WaitTimeout, wait_for
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_k8s_label, validate_k8s_subdomain

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")

ARGUMENT_SPEC = dict(
    definition=dict(type="dict", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=300),
)


def validate(params):
    definition = params["definition"]
    kind = definition.get("kind")
    if kind not in WORKLOAD_KINDS:
        raise ValidationError("definition.kind", f"{kind!r} is not a workload kind this module applies ({', '.join(WORKLOAD_KINDS)})")
    if definition.get("apiVersion") != KINDS[kind].api_version:
        raise ValidationError("definition.apiVersion", f"{definition.get('apiVersion')!r} is not the API version of {kind} ({KINDS[kind].api_version})")
    metadata = definition.get("metadata")
    if not isinstance(metadata, dict):
        raise ValidationError("definition.metadata", "is missing; it must give name and namespace")
    validate_k8s_subdomain(metadata.get("name"), "definition.metadata.name")
    validate_k8s_label(metadata.get("namespace"), "definition.metadata.namespace")
    if params["wait_timeout"] < 0:
        raise ValidationError("wait_timeout", f"{params['wait_timeout']} is negative")


def labelled(definition):
    """The manifest with the collection's label, which marks the workload as its own (and so removable)."""
    metadata = definition["metadata"]
    return dict(definition, metadata=dict(metadata, labels=dict(metadata.get("labels") or {}, **{MANAGED_BY_LABEL: MANAGED_BY})))


def pod_selector(workload):
    """The label selector of the workload's pods: its selector's matchLabels, else its pod template's labels."""
    spec = workload.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def pod_report(pod):
    ready = next((c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), False)
    return {"name": pod["metadata"]["name"], "node": pod["spec"].get("nodeName"), "phase": (pod.get("status") or {}).get("phase"), "ready": ready}


def current_pods(cluster, workload):
    selector = pod_selector(workload)
    if not selector:
        return []
    pods = cluster.list("Pod", workload["metadata"]["namespace"], label_selector=selector)
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def ensure_present(module, cluster, reconciler, desired):
    """Apply the workload and wait for its rollout; return what the wait found and the pods."""
    live = reconciler.live(desired)
    if live is not None and not is_managed(live):
        raise Conflict(
            f"{object_ref(desired)} exists and was not created by this collection (it has no label {MANAGED_BY_LABEL}={MANAGED_BY}): "
            "the collection does not take over someone else's workload. Label it so to hand it over, or give the workload another name"
        )
    applied = reconciler.apply(desired)
    status = ROLLOUT_STATUS.get(desired["kind"])
    if module.check_mode or not module.params["wait"] or status is None:
        return "", []
    kind, name, namespace = desired["kind"], desired["metadata"]["name"], desired["metadata"]["namespace"]
    # The first check reads the object the apply returned (or found unchanged), so a converged workload costs no request.
    objects = iter([applied])
    detail = wait_for(
        lambda: status(next(objects, None) or cluster.get(kind, name, namespace)), f"the rollout of {object_ref(desired)}", module.params["wait_timeout"]
    )
    return detail, [pod_report(pod) for pod in current_pods(cluster, desired)]


def ensure_absent(module, cluster, reconciler, desired):
    """Delete the workload if it is the collection's, then wait for it and its pods to go."""
    if not reconciler.delete(desired) or module.check_mode or not module.params["wait"]:
        return ""
    kind, name, namespace = desired["kind"], desired["metadata"]["name"], desired["metadata"]["namespace"]

    def gone():
        if cluster.get(kind, name, namespace) is not None:
            return False, f"{object_ref(desired)} is still being deleted"
        pods = current_pods(cluster, desired)
        return not pods, f"{len(pods)} pods still running" if pods else "the workload and its pods are gone"

    return wait_for(gone, f"the deletion of {object_ref(desired)}", module.params["wait_timeout"])


def main():
    module = cluster_module(ARGUMENT_SPEC)
    params = module.params
    try:
        validate(params)
    except ValidationError as error:
        module.fail_json(msg=str(error))
    desired = labelled(params["definition"])
    reconciler = None
    rollout, pods = "", []
    try:
        cluster = Cluster(module)
        reconciler = Reconciler(cluster, module.check_mode, keep_diff=module._diff)
        if params["state"] == "present":
            rollout, pods = ensure_present(module, cluster, reconciler, desired)
        else:
            rollout = ensure_absent(module, cluster, reconciler, desired)
    except (ApiError, Conflict, WaitTimeout) as error:
        module.fail_json(msg=str(error), changed=bool(reconciler and reconciler.changed), objects=reconciler.summary() if reconciler else [])
    for warning in reconciler.warnings():
        module.warn(warning)
    module.exit_json(rollout=rollout, pods=pods, **reconciler.result(module._diff))


if __name__ == "__main__":
    main()
