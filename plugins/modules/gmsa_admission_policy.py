#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_admission_policy
short_description: Make the gMSA webhook's namespace opt-out label a privilege of named groups
version_added: 0.1.0
description:
  - The windows-gmsa webhook skips namespaces labelled C(windows.k8s.io/disabled=true) (upstream's older manifests
    C(gmsa-webhook=disabled)). Whoever may label a namespace may therefore turn off the check that a pod's service
    account may C(use) the credential spec it names. Namespace admins often may.
  - This module installs a C(ValidatingAdmissionPolicy) and its binding that let only members of O(allowed_groups)
    add, change or remove those labels, on C(namespaces) and their C(status) and C(finalize) subresources.
    Other label changes are not affected.
  - Whom RBAC allows the verb C(opt-out) on C(gmsacredentialspecs.windows.k8s.io) may change them too. The verb grants
    nothing else. C(cluster-admin) has it through its wildcards, so a cluster admin who is not in the groups (a service
    account bound to C(cluster-admin), for example) keeps the right, and it can be granted with a ClusterRole.
  - The policy is used only where the API server serves C(admissionregistration.k8s.io/v1)
    C(ValidatingAdmissionPolicy) (Kubernetes 1.30 and later), which the module finds out by API discovery. Elsewhere
    it changes nothing, warns, and returns RV(supported=false), unless O(require_support=true).
  - Writes are server-side apply with the field manager C(wincontainers.gmsa). O(state=absent) deletes only objects
    with the label C(app.kubernetes.io/managed-by=wincontainers.gmsa).
author:
  - wincontainers.gmsa maintainers (@wincontainers)
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
  - wincontainers.gmsa.cluster_requests
options:
  state:
    description: V(present) installs or updates the policy and its binding, V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: Name of the C(ValidatingAdmissionPolicy) and of its C(ValidatingAdmissionPolicyBinding).
    type: str
    default: gmsa-opt-out-label
  allowed_groups:
    description:
      - Groups (as the API server authenticates them) whose members may set or remove the labels.
      - Include the group of whoever installs the webhook, which labels the webhook's own namespace.
    type: list
    elements: str
    default: [system:masters]
  require_support:
    description: Fail, instead of warning, when the API server does not serve C(ValidatingAdmissionPolicy) v1.
    type: bool
    default: false
seealso:
  - module: wincontainers.gmsa.gmsa_webhook
  - name: Validating Admission Policy
    description: Kubernetes documentation.
    link: https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/
requirements:
  - kubernetes >= 24.2.0
attributes:
  check_mode:
    support: full
    details: Server-side dry run.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Only cluster admins and the platform team may opt a namespace out of the gMSA checks
  wincontainers.gmsa.gmsa_admission_policy:
    allowed_groups: [system:masters, platform-admins]
"""

RETURN = r"""
supported:
  description: Whether the API server serves C(ValidatingAdmissionPolicy) v1; nothing is changed when it does not.
  returned: always
  type: bool
  sample: true
labels:
  description: The namespace labels the policy guards.
  returned: always
  type: list
  elements: str
  sample: [windows.k8s.io/disabled, gmsa-webhook]
objects:
  description: Every object handled, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {object: ValidatingAdmissionPolicy gmsa-opt-out-label, action: created}
"""

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _admission_policy
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import Conflict, Reconciler
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster, cluster_module
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    name=dict(type="str", default="gmsa-opt-out-label"),
    allowed_groups=dict(type="list", elements="str", default=_admission_policy.DEFAULT_ALLOWED_GROUPS),
    require_support=dict(type="bool", default=False),
)


def main():
    module = cluster_module(ARGUMENT_SPEC)
    params = module.params
    try:
        _admission_policy.validate(params["name"], params["allowed_groups"], params["state"])
    except ValidationError as error:
        module.fail_json(msg=str(error))
    reconciler = None
    try:
        cluster = Cluster(module)
        reconciler = Reconciler(cluster, module.check_mode)
        result = _admission_policy.reconcile(
            cluster, reconciler, params["name"], params["allowed_groups"], params["state"], params["require_support"], module.warn
        )
    except _admission_policy.Unsupported as error:
        module.fail_json(msg=str(error), supported=False, labels=list(_admission_policy.OPT_OUT_LABELS))
    except (ApiError, Conflict) as error:
        module.fail_json(msg=str(error), changed=bool(reconciler and reconciler.changed), objects=reconciler.summary() if reconciler else [])
    if not result["supported"]:
        module.exit_json(changed=False, objects=[], **result)
    for warning in reconciler.warnings():
        module.warn(warning)
    module.exit_json(**reconciler.result(module._diff), **result)


if __name__ == "__main__":
    main()
