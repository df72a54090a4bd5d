"""How long 100 and 1000 credspecs take: one gmsa_credspec task against a kubernetes.core.k8s loop, on the lab.

Each credspec is four objects: the GMSACredentialSpec, a ClusterRole allowing `use` on it, a RoleBinding and
the identity Secret. Both sides apply the same manifests (built by gmsa_credspec's own planner), under different
names, with server-side apply; each runs twice, the second time with nothing to change. The loop is timed on
``--loop-size`` credspecs (a loop of 4000 items takes many minutes) and stated per object; the speed-up compares
per-object times measured in the same run. The timed runs are the usual way of running the module on the controller:
in a fork of the task's worker (plugins/plugin_utils/_controller_module.py). A third run at each size, with nothing to
change, runs the module in a module process under /usr/bin/time instead, for the peak RSS of a process of its own.

    python benchmarks/credspec_apply.py [--sizes 100 1000] [--loop-size 100]   # from the repository root; starts the lab if needed
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _ansible  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._webhook_manifests import crd  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.wincontainers.gmsa.plugins.modules.gmsa_credspec import ARGUMENT_SPEC, manifests, plan_entry  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import kube  # noqa: E402 pylint: disable=wrong-import-position

DOMAIN = {
    "dns_name": "bench.example",
    "netbios_name": "BENCH",
    "sid": "S-1-5-21-1004336348-1177238915-682003330",
    "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4e",
}
IDENTITY = {"username": "bench-portable", "password": "Bench-Pa55w0rd!"}
MODULE_PREFIX, LOOP_PREFIX = "bench-mod", "bench-k8s"


def entries(prefix, count):
    return [
        {
            "account_name": f"{prefix}{index:04d}".replace("-", "")[-15:],
            "name": f"{prefix}-{index:04d}",
            "service_accounts": [{"name": "app", "namespace": prefix}],
            "identity_secret": {"name": f"{prefix}-{index:04d}-identity"},
        }
        for index in range(count)
    ]


def k8s_manifests(prefix, count):
    """The objects gmsa_credspec would create for the same entries, for the kubernetes.core.k8s loop."""
    params = dict({key: None for key in ARGUMENT_SPEC}, state="present", domain=DOMAIN, identity=IDENTITY)
    defaults = {key: None for key in ARGUMENT_SPEC["credspecs"]["options"]}
    defaults["additional_accounts"] = []
    objects = []
    for index, entry in enumerate(entries(prefix, count)):
        entry["identity_secret"] = dict(entry["identity_secret"], namespaces=None)
        objects.extend(manifests(plan_entry(dict(defaults, **entry), index, params)))
    # Objects of the loop are unlabelled by the collection, so the module's removal never touches them.
    for obj in objects:
        obj["metadata"]["labels"] = {"bench": prefix}
    return objects


def play(tasks):
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def run_playbook(lab, tasks, workdir, name):
    """A play of ``tasks`` against the lab's cluster; (wall seconds, tasks changed). Other benchmarks use it too."""
    result = _ansible.run_playbook(play(tasks), workdir, name, {"K8S_AUTH_KUBECONFIG": lab["kubeconfig"]})
    return result["wall"], _ansible.changed_tasks(result["report"])


def timed(result):
    """(seconds of the one timed task, tasks changed, wall seconds, peak RSS of its module process in MiB or None)."""
    (task,) = _ansible.tasks(result["report"])
    rss = result.get("rss_kib")
    return _ansible.task_seconds(task), _ansible.changed_tasks(result["report"]), result["wall"], max(rss) / 1024 if rss else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--loop-size", type=int, default=100)
    arguments = parser.parse_args()
    lab = kube.up()
    env = {"K8S_AUTH_KUBECONFIG": lab["kubeconfig"]}
    workdir = tempfile.mkdtemp(prefix="credspec-bench-")
    setup = [{"kubernetes.core.k8s": {"definition": crd(), "wait": True, "wait_condition": {"type": "Established"}}}]
    setup += [{"kubernetes.core.k8s": {"kind": "Namespace", "name": ns}} for ns in (MODULE_PREFIX, LOOP_PREFIX)]
    run_playbook(lab, setup, workdir, "setup")

    rows = []
    largest = max(arguments.sizes)
    try:
        for size in arguments.sizes:
            task = [{"wincontainers.gmsa.gmsa_credspec": {"domain": DOMAIN, "identity": IDENTITY, "credspecs": entries(MODULE_PREFIX, size)}}]
            runs = [timed(_ansible.run_playbook(play(task), workdir, f"module-{size}-{run}", env)) for run in ("first", "rerun")]
            _seconds, _changed, _wall, rss = timed(_ansible.run_playbook(play(task), workdir, f"module-{size}-rss", env, measure_rss=True))
            rows.append((f"gmsa_credspec, one task, {size}", size, runs, rss))
            remove = [{"wincontainers.gmsa.gmsa_credspec": {"state": "absent", "credspecs": entries(MODULE_PREFIX, size)}}]
            if size != largest:
                run_playbook(lab, remove, workdir, f"module-{size}-remove")
        loop = [
            {
                "kubernetes.core.k8s": {"definition": "{{ item }}", "server_side_apply": {"field_manager": "bench-k8s", "force_conflicts": True}},
                "loop": k8s_manifests(LOOP_PREFIX, arguments.loop_size),
                "loop_control": {"label": "{{ item.kind }} {{ item.metadata.name }}"},
            }
        ]
        loop_runs = [timed(_ansible.run_playbook(play(loop), workdir, f"loop-{run}", env)) for run in ("first", "rerun")]
        rows.append((f"kubernetes.core.k8s loop, {arguments.loop_size}", arguments.loop_size, loop_runs, None))
    finally:
        cleanup = [{"wincontainers.gmsa.gmsa_credspec": {"state": "absent", "credspecs": entries(MODULE_PREFIX, largest)}}]
        cleanup += [{"kubernetes.core.k8s": {"kind": "Namespace", "name": ns, "state": "absent", "wait": True}} for ns in (MODULE_PREFIX, LOOP_PREFIX)]
        cleanup += [
            {"kubernetes.core.k8s": {"api_version": api, "kind": kind, "state": "absent", "label_selectors": [f"bench={LOOP_PREFIX}"], "delete_all": True}}
            for api, kind in (("rbac.authorization.k8s.io/v1", "ClusterRole"), ("windows.k8s.io/v1", "GMSACredentialSpec"))
        ]
        # What is already gone (another run of the lab may have removed the CRD) must not hide the figures.
        run_playbook(lab, [dict(task, ignore_errors=True) for task in cleanup], workdir, "cleanup")

    print("\nEach credspec = 4 objects (GMSACredentialSpec, ClusterRole, RoleBinding, identity Secret). Task time from the json")
    print("callback; in parentheses the wall time of ansible-playbook. Rerun: nothing to change (changed=0). Peak RSS: of the")
    print("module in a process of its own, on a third run with nothing to change.")
    print(f"{'':34}{'first run':>22}{'rerun':>22}{'ms/object first':>17}{'ms/object rerun':>17}{'peak RSS':>10}")
    loop_per_object = [seconds * 1000 / (4 * arguments.loop_size) for seconds, _changed, _wall, _rss in loop_runs]
    for label, size, runs, rss in rows:
        per_object = [seconds * 1000 / (4 * size) for seconds, _changed, _wall, _rss in runs]
        print(
            f"{label:34}" + "".join(f"{seconds:>8.2f} s ({wall:>6.1f} s){'':>3}" for seconds, _changed, wall, _rss in runs)
            + "".join(f"{value:>17.2f}" for value in per_object) + (f"{rss:>7.0f} MiB" if rss else f"{'-':>10}")
        )
        if label.startswith("gmsa_credspec"):
            print(f"{'  speed-up over the loop':34}" + "".join(f"{loop / mine:>21.1f}x" for mine, loop in zip(per_object, loop_per_object)))
    changed = [[changed for _seconds, changed, _wall, _rss in runs] for _label, _size, runs, _rss in rows]
    if any(first != 1 or rerun != 0 for first, rerun in changed):
        sys.exit(f"expected each first run to change and each rerun not to: {changed}")


if __name__ == "__main__":
    main()
