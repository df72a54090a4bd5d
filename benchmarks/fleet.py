"""Site playbook wall time on a fleet of 1 and of 3 lab clusters (examples/inventories/lab-fleet): first run, rerun.

Needs the lab with three clusters (``make lab-up CLUSTERS=3``). For each fleet size the clusters' side is first
removed with wincontainers.gmsa.cleanup (not timed; the domain and the CRD stay), then the site playbook is timed
from the outside (``ansible-playbook`` start-up included) on a fresh cluster side, then ``--reruns`` times converged
(the median is shown: one rerun on a shared 2-core machine varies by 20% from run to run). Fleet of
1 is the lab cluster alone (``--limit localhost,lab``); of 3, all of them, in parallel with ``--forks``. Target: 3
clusters in at most 1.5 times one cluster's wall time.

    python benchmarks/fleet.py [--sizes 1 3] [--forks 4] [--reruns 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.lab import COLLECTIONS_PATH  # noqa: E402 pylint: disable=wrong-import-position

INVENTORY = os.path.join(REPO_ROOT, "examples", "inventories", "lab-fleet")
CLUSTERS = ("lab", "lab2", "lab3")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def playbook(name, size, forks):
    """Run one playbook of the collection on the first ``size`` clusters; return its wall time in seconds."""
    limit = ",".join(("localhost",) + CLUSTERS[:size])
    command = [ANSIBLE_PLAYBOOK, "-i", INVENTORY, "wincontainers.gmsa." + name, "--limit", limit, "--forks", str(forks)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH),
                            capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit("%s on %d cluster(s) failed:\n%s" % (name, size, result.stdout[-4000:]))
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3], choices=range(1, len(CLUSTERS) + 1))
    parser.add_argument("--forks", type=int, default=4)
    parser.add_argument("--reruns", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        playbook("cleanup", size, args.forks)
        first = playbook("site", size, args.forks)
        rows.append((size, first, statistics.median(playbook("site", size, args.forks) for _rerun in range(args.reruns))))
    first_of_one, rerun_of_one = rows[0][1], rows[0][2]
    print("%-9s %12s %17s %16s %12s" % ("clusters", "first run s", "rerun s (median)", "first vs size 1", "rerun vs 1"))
    for size, first, rerun in rows:
        print("%-9d %12.1f %17.1f %15.2fx %11.2fx" % (size, first, rerun, first / first_of_one, rerun / rerun_of_one))


if __name__ == "__main__":
    main()
