# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for running a module in a fork of the task's worker: when it may, and what the fork returns.
(tests/integration/test_controller_fork.py compares whole task results with a module process.)"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible_collections.wincontainers.gmsa.plugins.plugin_utils import _controller_module
from ansible_collections.wincontainers.gmsa.plugins.plugin_utils._controller_module import (
    fork_refusal,
    is_controller_python,
    module_fqn,
    run_in_fork,
)

CLUSTER_INFO = module_fqn("wincontainers.gmsa.gmsa_cluster_info")

# An Ansible worker has only its main thread when the action forks; this test process keeps other tests' threads.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def action(transport="local", become=None, async_val=0, interpreter=sys.executable, delegate_to=None, delegated_interpreter=None):
    """The parts of an ActionBase that fork_refusal reads, and the task's variables: the host's interpreter, and the
    one of the host delegated to."""
    task_vars = {"ansible_python_interpreter": interpreter}
    if delegate_to:
        task_vars["ansible_delegated_vars"] = {delegate_to: {"ansible_python_interpreter": delegated_interpreter}}
    return SimpleNamespace(
        _connection=SimpleNamespace(transport=transport, become=become),
        _task=SimpleNamespace(async_val=async_val, delegate_to=delegate_to),
        _templar=SimpleNamespace(template=lambda value: value),
    ), task_vars


def params(**module_args):
    return json.dumps({"ANSIBLE_MODULE_ARGS": dict(module_args, _ansible_check_mode=True)}).encode()


def test_a_local_task_with_the_controllers_python_runs_in_a_fork():
    assert fork_refusal(*action(), wrap_async=False) is None


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"transport": "ssh"}, "the connection is ssh, not local"),
        ({"become": object()}, "the task uses become"),
        ({"async_val": 30}, "the task is async"),
        ({"interpreter": "/usr/bin/python3.9"}, "the module's interpreter (/usr/bin/python3.9) is not the controller's Python"),
        ({"interpreter": "auto"}, "the module's interpreter (auto) is not the controller's Python"),
    ],
)
def test_any_other_task_runs_a_module_process_and_says_why(settings, reason):
    assert reason in fork_refusal(*action(**settings), wrap_async=False)


def test_a_delegated_task_runs_with_the_interpreter_of_the_host_delegated_to():
    delegated = action(interpreter="/usr/bin/python3.9", delegate_to="localhost", delegated_interpreter=sys.executable)
    assert fork_refusal(*delegated, wrap_async=False) is None
    delegated = action(interpreter=sys.executable, delegate_to="bastion", delegated_interpreter="/usr/bin/python3.9")
    assert "(/usr/bin/python3.9) is not the controller's Python" in fork_refusal(*delegated, wrap_async=False)


def test_keeping_the_remote_files_asks_for_a_module_process(monkeypatch):
    monkeypatch.setattr(C, "DEFAULT_KEEP_REMOTE_FILES", True)
    assert "ANSIBLE_KEEP_REMOTE_FILES" in fork_refusal(*action(), wrap_async=False)


def test_an_untested_ansible_core_runs_a_module_process(monkeypatch):
    monkeypatch.setattr(_controller_module, "ansible_core_version", "2.99.0")
    assert fork_refusal(*action(), wrap_async=False) == "ansible-core 2.99.0 is not one this collection runs modules in a fork with"


def test_the_controllers_python_is_the_same_program_in_the_same_directory(tmp_path):
    assert is_controller_python(sys.executable)
    # A virtual environment's python links to the base interpreter: elsewhere, it would lack the environment's packages.
    elsewhere = tmp_path / "python"
    elsewhere.symlink_to(os.path.realpath(sys.executable))
    assert not is_controller_python(str(elsewhere))
    assert is_controller_python(os.path.join(os.path.dirname(sys.executable), ".", os.path.basename(sys.executable)))


def test_the_module_name_of_a_task_is_one_of_the_collections_modules():
    expected = "ansible_collections.wincontainers.gmsa.plugins.modules.gmsa_credspec"
    assert module_fqn("gmsa_credspec") == module_fqn("wincontainers.gmsa.gmsa_credspec") == expected


def test_the_fork_returns_the_modules_result_and_exit_status():
    output = run_in_fork(CLUSTER_INFO, params(bogus=1), {})
    assert output["rc"] == 1
    result = json.loads(output["stdout"])
    assert result["failed"] and "Unsupported parameters" in result["msg"] and "bogus" in result["msg"]


def test_the_fork_gets_the_tasks_environment_and_leaves_the_workers_alone():
    # The K8S_AUTH_* environment is one way to give the cluster modules their connection (kubernetes.core's).
    output = run_in_fork(CLUSTER_INFO, params(api_key="token", validate_certs=False, credspecs=["webapp01"]), {"K8S_AUTH_HOST": "https://127.0.0.1:1"})
    result = json.loads(output["stdout"])
    assert result["failed"] and "127.0.0.1:1" in result["msg"], result
    assert "K8S_AUTH_HOST" not in os.environ


def test_warnings_come_back_in_the_result_as_from_a_module_process():
    # The module side of ansible.module_utils: warn() is recorded in the result, not sent to the controller's display.
    output = run_in_fork(module_fqn("gmsa_kds_root_key"), params(domain_server="127.0.0.1", domain_port=1, domain_username="u", domain_password="p"), {})
    result = json.loads(output["stdout"])
    assert result["failed"] and any("domain_auth ntlm without domain_tls" in str(warning) for warning in result["warnings"]), result


def test_an_exception_that_escapes_the_module_is_a_failed_result():
    output = run_in_fork("ansible_collections.wincontainers.gmsa.plugins.modules.no_such_module", params(), {})
    assert output["rc"] == 1
    result = json.loads(output["stdout"])
    assert result["failed"] and "no_such_module" in json.dumps(result["exception"])
