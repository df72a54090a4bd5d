#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: gmsa_service_accounts
short_description: Ensure the namespaces and service accounts that credential specs are bound to
version_added: 0.1.0
description:
  - Creates the namespaces and service accounts of O(service_accounts) that do not exist, labelled
    C(app.kubernetes.io/managed-by=wincontainers.gmsa). One that exists is left exactly as it is, its labels
    included, so it is never deleted later.
  - With O(state=absent), deletes the service accounts, then the namespaces, that carry that label. Deleting a
    namespace deletes everything in it, so a namespace is deleted only when it holds nothing else. The module reads
    every namespaced kind the API server lists in it (metadata only, so no Secret's data is read). Objects count as
    the namespace's own, not an application's, when they carry the label, are owned by another object, or are what
    Kubernetes makes in every namespace (the C(default) service account and its legacy token Secret, the
    C(kube-root-ca.crt) ConfigMap), or are Events. A namespace holding anything else is kept, and RV(kept_namespaces)
    names what keeps it. So does a kind that cannot be listed, or an API group whose discovery fails.
  - All of it in one task, with one list per kind instead of one request per object.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
  - wincontainers.gmsa.cluster_requests
options:
  service_accounts:
    description: The service accounts, each with its namespace.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the service account.
        type: str
        required: true
      namespace:
        description: Its namespace.
        type: str
        required: true
  state:
    description: V(present) creates what is missing, V(absent) removes what the collection created.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: With O(state=absent), wait until the deleted namespaces are gone (their objects finalized).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the deleted namespaces to be gone.
    type: int
    default: 120
seealso:
  - module: wincontainers.gmsa.gmsa_credspec
requirements:
  - kubernetes >= 24.2.0
attributes:
  check_mode:
    support: full
    details:
      - Server-side dry runs. A service account of a namespace that the same run would create cannot be dry-run; it is
        predicted, with a warning.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
# Fragments: the namespaces and service accounts are placeholders for your own.
- name: Ensure the namespaces and service accounts the credspecs are bound to
  wincontainers.gmsa.gmsa_service_accounts:
    service_accounts:
      - {namespace: web, name: webapp01}
      - {namespace: web, name: webapp02}

- name: Remove those the collection created, each namespace only if it holds nothing else
  wincontainers.gmsa.gmsa_service_accounts:
    state: absent
    service_accounts:
      - {namespace: web, name: webapp01}
      - {namespace: web, name: webapp02}
  register: removed

- name: Say which namespaces were kept, and why
  ansible.builtin.debug:
    msg: "{{ item.name }} is kept: it holds {{ item.objects | join(', ') }}"
  loop: "{{ removed.kept_namespaces }}"
"""

RETURN = r"""
objects:
  description: Every namespace and service account handled, with what happened to it.
  returned: always
  type: list
  elements: dict
  sample:
    - {object: Namespace web, action: created}
    - {object: ServiceAccount web/webapp01, action: unchanged}
kept_namespaces:
  description: With O(state=absent), the namespaces the collection created that are kept, and the objects that keep them.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: web, objects: [ConfigMap/app-settings]}
"""

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _namespaces
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import Reconciler, is_managed
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Cluster, cluster_module
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._waiter import WaitTimeout, namespaces_gone, wait_for
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_k8s_label, validate_k8s_subdomain

ARGUMENT_SPEC = dict(
    service_accounts=dict(
        type="list", elements="dict", required=True, options=dict(name=dict(type="str", required=True), namespace=dict(type="str", required=True))
    ),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=120),
)


def validate(params):
    for index, entry in enumerate(params["service_accounts"]):
        validate_k8s_label(entry["namespace"], f"service_accounts[{index}].namespace")
        validate_k8s_subdomain(entry["name"], f"service_accounts[{index}].name")
    if params["wait_timeout"] < 0:
        raise ValidationError("wait_timeout", f"{params['wait_timeout']} is negative")


def ensure_absent(module, cluster, reconciler, namespaces, accounts):
    """Delete our service accounts, then our namespaces that hold nothing else; return the kept ones."""
    reconciler.delete_all([obj for obj in accounts if is_managed(reconciler.live(obj))])
    ours = [obj["metadata"]["name"] for obj in namespaces if is_managed(reconciler.live(obj))]
    holding = {name: objects for name, objects in _namespaces.foreign_objects(cluster, ours).items() if objects}
    deleted = [name for name in ours if name not in holding]
    reconciler.delete_all([_namespaces.namespace(name) for name in deleted])
    if deleted and module.params["wait"] and not module.check_mode:
        wait_for(lambda: namespaces_gone(cluster, deleted), f"the deletion of namespaces {', '.join(deleted)}", module.params["wait_timeout"])
    for name, objects in holding.items():
        module.warn(f"namespace {name} was created by the collection but is kept: it holds objects the collection did not create ({', '.join(objects)})")
    return [{"name": name, "objects": objects} for name, objects in holding.items()]


def main():
    module = cluster_module(ARGUMENT_SPEC)
    params = module.params
    try:
        validate(params)
    except ValidationError as error:
        module.fail_json(msg=str(error))
    reconciler = None
    kept = []
    try:
        cluster = Cluster(module)
        reconciler = Reconciler(cluster, module.check_mode, keep_diff=module._diff)
        if params["state"] == "present":
            _namespaces.create_missing(reconciler, params["service_accounts"])
        else:
            namespaces, accounts = _namespaces.wanted(params["service_accounts"])
            _namespaces.read(reconciler, namespaces)
            kept = ensure_absent(module, cluster, reconciler, namespaces, accounts)
    except (ApiError, WaitTimeout) as error:
        module.fail_json(
            msg=str(error), changed=bool(reconciler and reconciler.changed), objects=reconciler.summary() if reconciler else [], kept_namespaces=kept
        )
    for warning in reconciler.warnings():
        module.warn(warning)
    module.exit_json(kept_namespaces=kept, **reconciler.result(module._diff))


if __name__ == "__main__":
    main()
