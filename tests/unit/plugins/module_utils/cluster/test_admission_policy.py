# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The opt-out label policy's shape; its behaviour is tested on the lab's API server (test_least_privilege.py)."""

import json
import re

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _admission_policy


def test_policy_guards_both_opt_out_labels_on_namespaces_and_their_subresources():
    policy = _admission_policy.policy("gmsa-opt-out-label", ["system:masters"])
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    rule = spec["matchConstraints"]["resourceRules"][0]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["namespaces", "namespaces/status", "namespaces/finalize"]
    assert [validation["message"].split(" label ")[1].split(":")[0] for validation in spec["validations"]] == ["windows.k8s.io/disabled", "gmsa-webhook"]
    binding = _admission_policy.binding("gmsa-opt-out-label")
    assert binding["spec"] == {"policyName": "gmsa-opt-out-label", "validationActions": ["Deny"]}


def test_group_names_are_string_literals_whatever_they_hold():
    groups = ['evil"] || true || ["', "plain"]
    expression = _admission_policy.policy("p", groups)["spec"]["variables"][0]["expression"]
    literals = re.search(r"in \[(.*)\]\) \|\| authorizer", expression).group(1)
    # JSON string literals are CEL string literals: the list reads back as exactly the given names.
    assert json.loads(f"[{literals}]") == groups
