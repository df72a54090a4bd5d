"""How long the site playbook takes on a converged lab (changed=0): the total, and the five slowest tasks.

The site playbook (wincontainers.gmsa.site: validate, domain, cluster, workload, verify) runs on the lab
inventory (examples/inventories/lab) once to converge, then ``--reruns`` times with nothing to change. Each
rerun is timed from the outside (wall, Ansible's start-up included) and per task (the json callback's start and
end, as profile_tasks reports them); the table shows the median rerun and the slowest tasks of the fastest one.

    python benchmarks/site_converged.py [--reruns 3]      # from the repository root; starts the lab if needed
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._ansible import changed_tasks, run_playbook, task_seconds, tasks  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import kube, samba  # noqa: E402 pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVENTORY = os.path.join(ROOT, "examples", "inventories", "lab")
SLOWEST = 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=3)
    arguments = parser.parse_args()
    samba.up()
    kube.up()
    workdir = tempfile.mkdtemp(prefix="site-bench-")
    env = {"ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false", "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    converge = run_playbook("wincontainers.gmsa.site", workdir, "converge", env, inventory=INVENTORY)
    reruns = [run_playbook("wincontainers.gmsa.site", workdir, f"rerun-{index}", env, inventory=INVENTORY) for index in range(arguments.reruns)]
    changed = [changed_tasks(rerun["report"]) for rerun in reruns]
    fastest = min(reruns, key=lambda rerun: rerun["wall"])
    timed = sorted(((task_seconds(task), task["task"]["name"]) for task in tasks(fastest["report"])), reverse=True)
    all_tasks = len(timed)
    print(f"\nsite playbook on the lab: converge {converge['wall']:.1f} s (changed={changed_tasks(converge['report'])}), then {arguments.reruns} reruns")
    print(f"rerun wall time: median {statistics.median(rerun['wall'] for rerun in reruns):.2f} s, fastest {fastest['wall']:.2f} s"
          f" ({all_tasks} tasks, {sum(seconds for seconds, _name in timed):.2f} s in tasks; changed={changed})")
    print(f"\nthe {SLOWEST} slowest tasks of the fastest rerun:")
    for seconds, name in timed[:SLOWEST]:
        print(f"  {seconds:>6.2f} s  {name}")
    if any(changed):
        sys.exit(f"a rerun changed something: changed={changed}")


if __name__ == "__main__":
    main()
