#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_cluster_info
short_description: Read the cluster side of the gMSA chain, and ask the webhook for its decisions
version_added: 0.1.0
description:
  - Reads, in one task, what the verification of a gMSA setup needs from a cluster. These are the
    C(GMSACredentialSpec) objects named in O(credspecs), the pods of a workload with the Windows nodes, and the
    webhook's decisions on pods that are only ever created as server-side dry runs (O(admission_probes)).
  - The cluster counterpart of M(wincontainers.gmsa.gmsa_domain_info). The C(wincontainers.gmsa.verify) role
    turns what it returns into its report.
  - Nothing is created or changed; a dry-run pod is admitted or refused by the API server and its webhooks, and never
    stored.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
  - wincontainers.gmsa.cluster_requests
options:
  credspecs:
    description: Names of the C(GMSACredentialSpec) objects to read (one list request for all of them).
    type: list
    elements: str
    default: []
  workload:
    description: A workload whose pods (labelled C(app.kubernetes.io/name=NAME)) and the cluster's Windows nodes are read.
    type: dict
    suboptions:
      namespace:
        description: Namespace of the workload.
        type: str
        required: true
      name:
        description: Value of the pods' C(app.kubernetes.io/name) label.
        type: str
        required: true
  admission_probes:
    description:
      - Pods to create as server-side dry runs (C(dryRun=All)), one after the other, to see whether the API server and
        its admission webhooks admit or refuse each. Nothing is stored.
    type: list
    elements: dict
    default: []
seealso:
  - module: wincontainers.gmsa.gmsa_domain_info
  - module: wincontainers.gmsa.gmsa_credspec
requirements:
  - kubernetes >= 24.2.0
attributes:
  check_mode:
    support: full
    details: The module changes nothing; the probes are dry runs in every mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
# Fragments: the credspec, workload and service account names are placeholders for your own.
- name: Read the credspecs and the workload, and ask the webhook about two pods
  wincontainers.gmsa.gmsa_cluster_info:
    credspecs: [webapp01]
    workload: {namespace: web, name: webapp}
    admission_probes:
      - apiVersion: v1
        kind: Pod
        metadata: {name: probe, namespace: web}
        spec:
          serviceAccountName: webapp01
          securityContext: {windowsOptions: {gmsaCredentialSpecName: webapp01}}
          containers: [{name: probe, image: mcr.microsoft.com/windows/nanoserver:ltsc2022}]
  register: cluster_side
"""

RETURN = r"""
credspecs:
  description: The C(GMSACredentialSpec) objects of O(credspecs) that exist, in the order named.
  returned: always
  type: list
  elements: dict
pods:
  description: The pods of O(workload); empty without it.
  returned: always
  type: list
  elements: dict
windows_nodes:
  description: The nodes labelled C(kubernetes.io/os=windows), metadata only; empty without O(workload).
  returned: always
  type: list
  elements: dict
admission_probes:
  description:
    - One entry per probe, in order. C(failed) is whether the API server refused the pod, C(msg) why, and C(result)
      the pod as it would be stored (its webhooks' mutations included) when admitted.
  returned: always
  type: list
  elements: dict
  sample:
    - {failed: false, msg: "", result: {kind: Pod}}
    - {failed: true, msg: "creating Pod web/probe: admission webhook ... denied the request: ... not authorized to use ...", result: {}}
"""

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster, cluster_module
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_k8s_label, validate_k8s_subdomain

ARGUMENT_SPEC = dict(
    credspecs=dict(type="list", elements="str", default=[]),
    workload=dict(type="dict", options=dict(namespace=dict(type="str", required=True), name=dict(type="str", required=True))),
    admission_probes=dict(type="list", elements="dict", default=[]),
)
WORKLOAD_NAME_LABEL = "app.kubernetes.io/name"
WINDOWS_NODES = "kubernetes.io/os=windows"


def validate(params):
    for index, name in enumerate(params["credspecs"]):
        validate_k8s_subdomain(name, f"credspecs[{index}]")
    if params["workload"]:
        validate_k8s_label(params["workload"]["namespace"], "workload.namespace")
    for index, pod in enumerate(params["admission_probes"]):
        if pod.get("kind") != "Pod" or not isinstance(pod.get("metadata"), dict):
            raise ValidationError(f"admission_probes[{index}]", "must be a Pod manifest with metadata (kind: Pod)")
        validate_k8s_subdomain(pod["metadata"].get("name"), f"admission_probes[{index}].metadata.name")
        validate_k8s_label(pod["metadata"].get("namespace"), f"admission_probes[{index}].metadata.namespace")


def probe(cluster, pod):
    """The API server's decision on ``pod`` as a dry run, in the shape kubernetes.core.k8s registers (failed, msg, result)."""
    try:
        return {"failed": False, "msg": "", "result": cluster.create(pod, dry_run=True)}
    except ApiError as error:
        if error.status == 0:
            raise  # no answer at all: not a decision
        return {"failed": True, "msg": str(error), "result": {}}


def main():
    module = cluster_module(ARGUMENT_SPEC)
    params = module.params
    try:
        validate(params)
    except ValidationError as error:
        module.fail_json(msg=str(error))
    result = dict(changed=False, credspecs=[], pods=[], windows_nodes=[], admission_probes=[])
    try:
        cluster = Cluster(module)
        if params["credspecs"]:
            live = {item["metadata"]["name"]: item for item in cluster.list("GMSACredentialSpec")}
            result["credspecs"] = [live[name] for name in params["credspecs"] if name in live]
        workload = params["workload"]
        if workload:
            result["pods"] = cluster.list("Pod", workload["namespace"], label_selector=f"{WORKLOAD_NAME_LABEL}={workload['name']}")
            result["windows_nodes"] = cluster.list("Node", label_selector=WINDOWS_NODES, metadata_only=True)
        result["admission_probes"] = [probe(cluster, pod) for pod in params["admission_probes"]]
    except ApiError as error:
        module.fail_json(msg=str(error), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
