# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_admission_policy without an API server that serves ValidatingAdmissionPolicy (the lab's does; see
tests/integration/test_least_privilege.py)."""

import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_admission_policy


class OldApiServer:
    """Discovery answers that admissionregistration.k8s.io/v1 has no validatingadmissionpolicies; any write fails the test."""

    host = "https://old.example:6443"

    def __init__(self, _module):
        pass

    def serves(self, kind):
        return False

    def __getattr__(self, name):
        raise AssertionError(f"the module called {name} on a cluster without the policy API")


def _run(monkeypatch, capsys, args):
    """The module's result, with the warnings it gave in ``warned`` (ansible-core sends them elsewhere once controller
    code is loaded in the process, as other unit tests do)."""
    warned = []
    monkeypatch.setattr(gmsa_admission_policy, "Cluster", OldApiServer)
    monkeypatch.setattr(AnsibleModule, "warn", lambda _module, message: warned.append(message))
    with patch_module_args(args), pytest.raises(SystemExit):
        gmsa_admission_policy.main()
    return dict(json.loads(capsys.readouterr().out), warned=warned)


def test_without_the_api_nothing_changes_and_the_user_is_warned(monkeypatch, capsys):
    result = _run(monkeypatch, capsys, {})
    assert not result.get("failed") and result["changed"] is False and result["supported"] is False
    assert [message for message in result["warned"] if "does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy" in message]


def test_require_support_fails_without_the_api(monkeypatch, capsys):
    result = _run(monkeypatch, capsys, {"require_support": True})
    assert result["failed"] and "does not serve" in result["msg"]


def test_an_empty_group_list_is_refused_before_the_cluster_is_asked(monkeypatch, capsys):
    result = _run(monkeypatch, capsys, {"allowed_groups": []})
    assert result["failed"] and result["msg"].startswith("allowed_groups: must name at least one group")
