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

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import MANAGED_BY, MANAGED_BY_LABEL
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import LEGACY_OPT_OUT_LABEL, OPT_OUT_LABEL

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
