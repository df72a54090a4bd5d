# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A module run in a fork of the task's worker (plugin_utils/_controller_module.py) gives the same results as the same
module in a module process: reads, check mode with its diff, a refused option, a module that fails with a secret in
its arguments. The same play runs twice on the lab cluster; the second time the interpreter is a wrapper script
around the same Python, which is not the controller's own program, so each module runs in a module process.

    python -m pytest tests/integration/test_controller_fork.py -v
"""

import os
import sys

from tests.integration.support import kubectl, run_play

pytest_plugins = ("tests.lab.pytest_kube",)

NAMESPACE = "itest-fork"
SECRET = "Fork-Secret-7c1e"  # nosec - a test value, looked for in the output
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "itest-fork", "namespace": NAMESPACE},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "itest-fork"}},
        "template": {
            "metadata": {"labels": {"app": "itest-fork"}},
            "spec": {
                "nodeSelector": {"kubernetes.io/os": "windows"},
                "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}],
            },
        },
    },
}
TASKS = [
    {"wincontainers.gmsa.gmsa_cluster_info": {"credspecs": ["itest-absent"], "workload": {"namespace": NAMESPACE, "name": "itest-fork"}}},
    {"wincontainers.gmsa.gmsa_workload": {"definition": DEPLOYMENT, "wait": False}, "check_mode": True},
    {"wincontainers.gmsa.gmsa_cluster_info": {"credspecs": ["Not A Name"]}, "ignore_errors": True},
    {"wincontainers.gmsa.gmsa_kds_root_key": {"domain_server": "127.0.0.1", "domain_port": 1, "domain_transport": "ldap",
                                              "domain_username": "itest", "domain_password": SECRET}, "ignore_errors": True},
]


def test_a_fork_and_a_module_process_give_the_same_results(kube_lab, tmp_path):
    kubectl(kube_lab, "create", "namespace", NAMESPACE)
    try:
        wrapper = tmp_path / "python"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n', encoding="utf-8")
        os.chmod(wrapper, 0o755)
        module_process = ("-e", f"ansible_python_interpreter={wrapper}")
        forked = run_play(kube_lab, TASKS, "--diff")
        separate = run_play(kube_lab, TASKS, "--diff", *module_process)
        # -vvv says which way each module ran (the json callback's output would not be JSON with it).
        forked_log = run_play(kube_lab, TASKS, "-vvv", callback="default").output
        separate_log = run_play(kube_lab, TASKS, "-vvv", *module_process, callback="default").output
    finally:
        kubectl(kube_lab, "delete", "namespace", NAMESPACE, "--wait=false")
    assert forked_log.count("in a fork of the worker") == len(TASKS), forked_log
    assert separate_log.count("a module process, since the module's interpreter") == len(TASKS), separate_log
    assert len(forked.results) == len(separate.results) == len(TASKS)
    assert forked.results == separate.results
    read, planned, refused, failed = forked.results
    assert read["pods"] == [] and read["credspecs"] is not None and not read["changed"]
    assert planned["changed"] and planned["diff"]
    assert refused["failed"] and "credspecs" in refused["msg"]
    assert failed["failed"] and failed["msg"]
    assert all(SECRET not in output for output in (forked.output, separate.output, forked_log, separate_log))
