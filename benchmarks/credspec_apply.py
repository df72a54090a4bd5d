"""How long 100 credspecs take: one gmsa_credspec task against a kubernetes.core.k8s loop, on the lab.

Each credspec is four objects: the GMSACredentialSpec, a ClusterRole allowing `use` on it, a RoleBinding and
the identity Secret. Both sides apply the same manifests (built by gmsa_credspec's own planner), under different
names, with server-side apply; each runs twice, the second time with nothing to change.

    python benchmarks/credspec_apply.py [--count 100]     # from the repository root; starts the lab if needed
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import yaml  # noqa: E402 pylint: disable=wrong-import-position

# tests.conftest makes the checkout importable as ansible_collections.wincontainers.gmsa.
import tests.conftest  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
import ansible_collections.wincontainers.gmsa as collection  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.modules.gmsa_credspec import manifests, plan_entry  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import kube  # noqa: E402 pylint: disable=wrong-import-position

DOMAIN = {
    "dns_name": "bench.example",
    "netbios_name": "BENCH",
    "sid": "S-1-5-21-1004336348-1177238915-682003330",
    "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e",
}
IDENTITY = {"username": "bench-portable", "password": "Bench-Pa55w0rd!"}
COLLECTIONS_PATH = os.path.dirname(os.path.dirname(os.path.dirname(collection.__path__[0])))


def entries(prefix, count):
    namespace = prefix
    return [
        {
            "account_name": f"{prefix}{index:03d}".replace("-", ""),
            "name": f"{prefix}-{index:03d}",
            "service_accounts": [{"name": "app", "namespace": namespace}],
            "identity_secret": {"name": f"{prefix}-{index:03d}-identity"},
        }
        for index in range(count)
    ]


def k8s_manifests(prefix, count):
    """The objects gmsa_credspec would create for the same entries, for the kubernetes.core.k8s loop."""
    params = {"state": "present", "domain": DOMAIN, "identity": IDENTITY}
    defaults = {
        "domain": None, "additional_accounts": [], "host_account_config": None, "cluster_role_name": None, "identity": None,
        "json_path": None,
    }
    objects = []
    for index, entry in enumerate(entries(prefix, count)):
        entry["identity_secret"] = dict(entry["identity_secret"], namespaces=None)
        objects.extend(manifests(plan_entry(dict(defaults, **entry), index, params)))
    # Objects of the loop are unlabelled by the collection, so the module's removal never touches them.
    for obj in objects:
        obj["metadata"]["labels"] = {"bench": prefix}
    return objects


def run_playbook(lab, tasks, workdir, name):
    path = os.path.join(workdir, name + ".yml")
    with open(path, "w", encoding="utf-8") as playbook:
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], playbook)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        K8S_AUTH_KUBECONFIG=lab["kubeconfig"],
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCALHOST_WARNING="false",
    )
    started = time.monotonic()
    process = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
        capture_output=True, text=True, env=env, check=False,
    )
    seconds = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"{name} failed:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}")
    stats = json.loads(process.stdout)["stats"]["localhost"]
    return seconds, stats["changed"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    count = parser.parse_args().count
    lab = kube.up()
    workdir = tempfile.mkdtemp(prefix="credspec-bench-")
    module_prefix, loop_prefix = "bench-mod", "bench-k8s"
    setup = [{"kubernetes.core.k8s": {"definition": crd(), "wait": True, "wait_condition": {"type": "Established"}}}]
    setup += [{"kubernetes.core.k8s": {"kind": "Namespace", "name": ns}} for ns in (module_prefix, loop_prefix)]
    run_playbook(lab, setup, workdir, "setup")

    module_task = [{"wincontainers.gmsa.gmsa_credspec": {"domain": DOMAIN, "identity": IDENTITY, "credspecs": entries(module_prefix, count)}}]
    loop_task = [
        {
            "kubernetes.core.k8s": {"definition": "{{ item }}", "server_side_apply": {"field_manager": "bench-k8s", "force_conflicts": True}},
            "loop": k8s_manifests(loop_prefix, count),
            "loop_control": {"label": "{{ item.kind }} {{ item.metadata.name }}"},
        }
    ]
    figures = {}
    try:
        for label, short, tasks in (("gmsa_credspec, one task", "module", module_task), ("kubernetes.core.k8s loop", "loop", loop_task)):
            figures[label] = [run_playbook(lab, tasks, workdir, f"{short}-{run}") for run in ("first", "rerun")]
    finally:
        cleanup = [{"wincontainers.gmsa.gmsa_credspec": {"state": "absent", "credspecs": entries(module_prefix, count)}}]
        cleanup += [{"kubernetes.core.k8s": {"kind": "Namespace", "name": ns, "state": "absent", "wait": True}} for ns in (module_prefix, loop_prefix)]
        cleanup += [
            {"kubernetes.core.k8s": {"api_version": api, "kind": kind, "state": "absent", "label_selectors": [f"bench={loop_prefix}"], "delete_all": True}}
            for api, kind in (("rbac.authorization.k8s.io/v1", "ClusterRole"), ("windows.k8s.io/v1", "GMSACredentialSpec"))
        ]
        run_playbook(lab, cleanup, workdir, "cleanup")

    objects = len(k8s_manifests(loop_prefix, count))
    print(f"\n{count} credspecs = {objects} objects (GMSACredentialSpec, ClusterRole, RoleBinding and identity Secret each)")
    print(f"{'':28}{'first run':>14}{'rerun':>14}")
    for label, runs in figures.items():
        print(f"{label:28}" + "".join(f"{seconds:>9.1f} s ({changed})" for seconds, changed in runs))
    module_runs, loop_runs = figures["gmsa_credspec, one task"], figures["kubernetes.core.k8s loop"]
    speed_ups = [loop_seconds / module_seconds for (module_seconds, _changed), (loop_seconds, _changed) in zip(module_runs, loop_runs)]
    print(f"{'speed-up':28}" + "".join(f"{speed_up:>13.1f}x" for speed_up in speed_ups))
    print("(in parentheses: tasks reported changed)")


if __name__ == "__main__":
    main()
