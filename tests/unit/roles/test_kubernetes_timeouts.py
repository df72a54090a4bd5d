# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""kubernetes.core sends its requests, and the API discovery before them, without a timeout (no _request_timeout in
its module_utils; kubernetes.dynamic's Discoverer asks /version, /api and /apis without one), so every kubernetes.core
task of the roles carries Ansible's task timeout: against an API server that never answers, it fails in time."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import yaml

from tests.lab import COLLECTIONS_PATH

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"


def kubernetes_tasks(tasks):
    """Every kubernetes.core task in ``tasks``, blocks included."""
    for task in tasks or ():
        for section in ("block", "rescue", "always"):
            yield from kubernetes_tasks(task.get(section))
        if any(key.startswith("kubernetes.core.") for key in task):
            yield task


def test_every_kubernetes_core_task_of_the_roles_has_a_timeout():
    found = [
        (path.relative_to(ROLES).as_posix(), task["name"], task.get("timeout"))
        for path in sorted(ROLES.glob("*/tasks/*.yml"))
        for task in kubernetes_tasks(yaml.safe_load(path.read_text()))
    ]
    assert len(found) >= 1, found  # the verify role's in-pod checks still use kubernetes.core.k8s_exec (1 on 2026-12-02)
    assert [entry for entry in found if not entry[2]] == []


def test_a_role_task_against_an_api_server_that_never_answers_fails_within_its_timeout(hung_peer, tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{
            "name": "The service accounts of a workload",
            "ansible.builtin.include_role": {"name": "wincontainers.gmsa.workload", "tasks_from": "service_accounts"},
            "vars": {"workload_service_accounts": [{"name": "app", "namespace": "web"}], "workload_kubernetes_timeout": 2, "workload_wait_timeout": 0},
        }],
    }]))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        K8S_AUTH_HOST=f"https://127.0.0.1:{hung_peer}",
        K8S_AUTH_API_KEY="not-a-real-token",
        K8S_AUTH_VERIFY_SSL="false",
    )
    started = time.monotonic()
    process = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert process.returncode != 0, process.stdout[-2000:]
    assert "Ensure the namespaces and service accounts of the workloads" in process.stdout, process.stdout[-2000:]
    assert "Timed out after 2 second(s)" in process.stdout, process.stdout[-2000:]
    # ansible-playbook's own start and end take a few seconds on a loaded machine; without the timeout it never ends.
    assert elapsed < 60, elapsed
