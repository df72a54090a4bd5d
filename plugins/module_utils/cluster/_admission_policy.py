# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A ValidatingAdmissionPolicy that makes the gMSA webhook's namespace opt-out a privilege.

The webhook skips namespaces labelled ``windows.k8s.io/disabled=true`` (upstream's older manifests:
``gmsa-webhook=disabled``), so whoever may label a namespace may turn off the check that a pod's service
account may ``use`` its credspec. The policy lets only members of named groups (and whom RBAC allows the verb
``opt-out`` on GMSACredentialSpecs, as cluster-admin does) add, change or remove those labels.
"""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import Conflict, Reconciler, is_managed
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import MANAGED_BY, MANAGED_BY_LABEL, Cluster, object_ref
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import LEGACY_OPT_OUT_LABEL, OPT_OUT_LABEL
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_k8s_subdomain

API_VERSION = "admissionregistration.k8s.io/v1"
OPT_OUT_LABELS = (OPT_OUT_LABEL, LEGACY_OPT_OUT_LABEL)
# Labels can change through the status and finalize subresources too: their update strategies reset only spec or
# status (k8s.io/kubernetes pkg/registry/core/namespace/strategy.go, PrepareForUpdate), never metadata.
NAMESPACE_RESOURCES = ["namespaces", "namespaces/status", "namespaces/finalize"]
# Who may opt out besides the named groups: whoever RBAC allows this verb on GMSACredentialSpecs. A custom verb
# grants nothing else; cluster-admin has it through its wildcards, so a cluster admin outside the groups keeps it.
OPT_OUT_VERB = "opt-out"
# Label values cannot hold '<', so this stands for "no such label" and differs from every value, "" included.
_ABSENT = "<absent>"
DEFAULT_ALLOWED_GROUPS = ["system:masters"]


class Unsupported(Exception):
    """The API server does not serve ValidatingAdmissionPolicy v1, and the caller requires it."""


def _cel_string(text: str) -> str:
    """A CEL string literal; JSON's escapes are a subset of CEL's, so nothing in ``text`` becomes expression syntax."""
    return json.dumps(text)


def _label_value(obj: str, label: str) -> str:
    key = _cel_string(label)
    present = f"has({obj}.metadata.labels) && {key} in {obj}.metadata.labels"
    return f"({present} ? {obj}.metadata.labels[{key}] : {_cel_string(_ABSENT)})"


def _labels_meta() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/name": "gmsa-opt-out-policy"}


def policy(name: str, groups: list[str], labels: tuple[str, ...] = OPT_OUT_LABELS) -> dict[str, Any]:
    """The policy: a namespace's opt-out labels may change only in a request from a member of ``groups``."""
    allowed = ", ".join(_cel_string(group) for group in groups)
    validations = [
        {
            "expression": f"variables.authorized || (oldObject != null ? {_label_value('oldObject', label)} : {_cel_string(_ABSENT)}) == "
            f"{_label_value('object', label)}",
            "message": f"only members of {', '.join(groups)} (or whom RBAC allows {OPT_OUT_VERB} on gmsacredentialspecs.windows.k8s.io) "
            f"may set, change or remove the namespace label {label}: it turns off the gMSA webhook's check that a pod's service "
            "account may use its credential spec",
            "reason": "Forbidden",
        }
        for label in labels
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": _labels_meta()},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": NAMESPACE_RESOURCES}]
            },
            "variables": [
                {
                    "name": "authorized",
                    "expression": f"request.userInfo.groups.exists(group, group in [{allowed}]) || "
                    f'authorizer.group("windows.k8s.io").resource("gmsacredentialspecs").check("{OPT_OUT_VERB}").allowed()',
                }
            ],
            "validations": validations,
        },
    }


def binding(name: str) -> dict[str, Any]:
    """The binding that enforces the policy of the same name on every namespace."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": _labels_meta()},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }


def validate(name: str, allowed_groups: list[str], state: str, prefix: str = "") -> None:
    """Check the policy's name and groups; ``prefix`` is the option holding them (``opt_out_policy.``), for the error."""
    validate_k8s_subdomain(name, f"{prefix}name")
    if state == "present" and not allowed_groups:
        raise ValidationError(f"{prefix}allowed_groups", "must name at least one group; with none, nobody could opt a namespace out or back in")
    for index, group in enumerate(allowed_groups):
        if not group or any(not char.isprintable() for char in group):
            raise ValidationError(f"{prefix}allowed_groups[{index}]", f"{group!r} is empty or contains control characters")


def reconcile(cluster: Cluster, reconciler: Reconciler, name: str, allowed_groups: list[str], state: str, require_support: bool, warn) -> dict[str, Any]:
    """Install (``state`` present) or remove the policy and its binding through ``reconciler``; return ``supported``
    and the ``labels`` guarded. Where the API server does not serve the policy API (asked by discovery, not assumed
    from its version), change nothing and ``warn``, or raise :class:`Unsupported` with ``require_support``.
    Refuses (:class:`Conflict`) to replace a policy or binding of that name that the collection did not create."""
    result = {"supported": True, "labels": list(OPT_OUT_LABELS)}
    if not cluster.serves("ValidatingAdmissionPolicy"):
        message = f"the API server at {cluster.host} does not serve {API_VERSION} ValidatingAdmissionPolicy (Kubernetes 1.30 or later)"
        if require_support:
            raise Unsupported(message)
        warn(f"{message}; anyone who may label a namespace can still opt it out of the gMSA webhook's checks")
        return dict(result, supported=False)
    objects = [policy(name, allowed_groups), binding(name)]
    if state == "present":
        foreign = [object_ref(obj) for obj in objects if (live := reconciler.live(obj)) is not None and not is_managed(live)]
        if foreign:
            raise Conflict(f"refusing to replace {', '.join(foreign)}: not created by this collection; choose another name")
        for obj in objects:
            reconciler.apply(obj)
    else:
        # The reverse of creation: the binding, then the policy it names.
        for obj in reversed(objects):
            reconciler.delete(obj)
    return result
