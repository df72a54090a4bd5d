"""A fleet of lab clusters: the first is the lab's own cluster, each other one a full control plane beside it.

Member 1 is the cluster `labctl up` runs (by default "lab", in the lab's state dir). Members 2..N are named after
it, "lab2".."labN", each with a state dir of its own under <state dir>/fleet/<name> (kubeconfig, kwokctl work dir,
lab kubelet) and network namespaces named from it (tests/lab/netns.py), so nothing of one reaches another. A fleet
whose first cluster has another name and state dir (the fleet suite's "fleet", "fleet2", ...) runs beside the lab's.
Member 2 runs the older Kubernetes minor (build.KUBERNETES_OLDER): a fleet of two or more always spans two
minors, as a real one being upgraded does.
"""

import os
from dataclasses import dataclass

from tests.lab import cache_root, kube, webhook

FLEET_DIR = "fleet"
OLDER_MINOR_MEMBER = 2
# The integration suite's own fleet (tests/integration/test_fleet.py), beside the lab's: it stops API servers.
SUITE_CLUSTER = "fleet"


@dataclass(frozen=True)
class Member:
    """One cluster of the fleet: its name, its state dir, and whether it runs the older minor."""

    name: str
    state_dir: str
    older_minor: bool


def member(state_dir, number, cluster=kube.DEFAULT_CLUSTER):
    """The fleet's member number (1-based) for the fleet whose first cluster is cluster, in state_dir."""
    if number == 1:
        return Member(cluster, state_dir, False)
    name = "%s%d" % (cluster, number)
    return Member(name, os.path.join(state_dir, FLEET_DIR, name), number == OLDER_MINOR_MEMBER)


def members(state_dir, count, cluster=kube.DEFAULT_CLUSTER):
    return [member(state_dir, number, cluster) for number in range(1, count + 1)]


def existing(state_dir, cluster=kube.DEFAULT_CLUSTER):
    """The members after the first that have a state dir (up made them, down has not removed them yet)."""
    fleet_dir = os.path.join(state_dir, FLEET_DIR)
    names = os.listdir(fleet_dir) if os.path.isdir(fleet_dir) else []
    numbers = [name.removeprefix(cluster) for name in names if name.startswith(cluster)]
    return [member(state_dir, number, cluster) for number in sorted(int(number) for number in numbers if number.isdigit() and int(number) > 1)]


def suite_state_dir():
    """Where the fleet suite's clusters live while it runs (`make lab-down` removes any an interrupted run left)."""
    return os.path.join(cache_root(), "fleet-suite")


def up_member(fleet_member):
    """Start one member (or reuse it) with its lab kubelet serving webhook pods; return kube.up's facts."""
    facts = kube.up(fleet_member.state_dir, fleet_member.name, older_minor=fleet_member.older_minor)
    webhook.ensure_running(facts)
    return facts


def down_member(fleet_member):
    try:
        webhook.stop_all(fleet_member.state_dir)
    finally:
        kube.down(fleet_member.state_dir, fleet_member.name)
    if fleet_member.state_dir.endswith(os.path.join(FLEET_DIR, fleet_member.name)) and os.path.isdir(fleet_member.state_dir):
        _remove_empty_tree(fleet_member.state_dir)


def down(state_dir, cluster=kube.DEFAULT_CLUSTER):
    """Remove every member of the fleet whose first cluster is cluster, the first last (idempotent)."""
    try:
        for other in existing(state_dir, cluster):
            down_member(other)
        webhook.stop_all(state_dir)
    finally:
        # Even if the webhook side failed: the cluster's namespaces go, with whatever still runs inside them.
        kube.down(state_dir, cluster)


def _remove_empty_tree(directory):
    # What kube.down and webhook.stop_all leave is empty directories; anything else stays for a human to see.
    for root, _dirs, _files in os.walk(directory, topdown=False):
        if not os.listdir(root):
            os.rmdir(root)
    parent = os.path.dirname(directory)
    if os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)
