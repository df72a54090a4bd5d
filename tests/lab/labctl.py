"""Bring the whole lab up or down: the Samba AD DC and the Kubernetes control plane (with served webhooks).

    python -m tests.lab.labctl up|down|status [--only ad|kube] [--state-dir DIR] [--cluster NAME] [--clusters N]
    (from the repository root; `make lab-up`, `make lab-down`, `make lab-status` do the same)

State lives in $WGMSA_LAB_DIR (default ~/.cache/wincontainers-gmsa/lab). The cluster's name (default "lab")
names its network namespaces: another name and state dir run a second cluster beside the first. `down` removes
everything `up` made, even after an `up` that failed half-way. Secrets are never printed.

`up --clusters N` (`make lab-up CLUSTERS=N`) runs a fleet: the cluster above and N-1 more beside it, the second
on the older Kubernetes minor (tests/lab/fleet.py). `down` and `status` cover every fleet member that exists.
"""

import argparse
import functools
import sys
import time

from tests.lab import build, default_state_dir, fleet, kube, netns, samba, webhook

# What the status table shows of each half; anything else (passwords included) stays out.
SHOWN = {
    "ad": ("running", "host", "ldap_port", "ldaps_port", "realm", "krb5_config", "ca_cert", "state_dir"),
    "kube": ("running", "server", "kubeconfig", "netns", "processes", "webhooks", "state_dir"),
}


def _kube_up(state_dir, cluster, clusters=1):
    webhook.ensure_running(kube.up(state_dir, cluster))
    for member in fleet.members(state_dir, clusters, cluster)[1:]:
        fleet.up_member(member)
    return kube_status(state_dir, cluster)


def _cluster_status(state_dir, cluster):
    return dict(kube.status(state_dir, cluster), webhooks=len(webhook.status(state_dir)))


def kube_status(state_dir, cluster):
    facts = _cluster_status(state_dir, cluster)
    for member in fleet.existing(state_dir, cluster):
        member_facts = _cluster_status(member.state_dir, member.name)
        minor = build.KUBERNETES_OLDER.name if member.older_minor else "kubernetes"
        facts["fleet " + member.name] = "%s (%s, %s)" % (
            "running" if member_facts["running"] else "stopped", minor, kube.kubeconfig_path(member.state_dir))
    return facts


def _halves(cluster, clusters):
    # up starts `clusters` members; down and status cover every member that exists.
    kube_actions = {
        "up": functools.partial(_kube_up, cluster=cluster, clusters=clusters),
        "down": functools.partial(fleet.down, cluster=cluster),
        "status": functools.partial(kube_status, cluster=cluster),
    }
    return {"ad": {"up": samba.up, "down": samba.down, "status": samba.status}, "kube": kube_actions}


def _print_table(half, facts):
    for key in SHOWN[half] + tuple(sorted(key for key in facts if key.startswith("fleet "))):
        if key in facts:
            print("  %-5s %-12s %s" % (half, key, facts[key]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--only", choices=("ad", "kube"))
    parser.add_argument("--state-dir", default=default_state_dir())
    parser.add_argument("--cluster", default=kube.DEFAULT_CLUSTER, help="the Kubernetes cluster's name (default: %(default)s)")
    parser.add_argument("--clusters", type=int, default=1, help="up: how many clusters the fleet runs (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.clusters < 1:
        parser.error("--clusters: must be 1 or more, got %d" % args.clusters)
    halves = _halves(args.cluster, args.clusters)
    for half in [args.only] if args.only else list(halves):
        started = time.monotonic()
        try:
            facts = halves[half][args.action](args.state_dir)
        except (kube.LabError, samba.LabError, webhook.WebhookError, netns.NetnsError) as error:
            sys.exit("lab %s %s failed: %s" % (half, args.action, error))
        print("%s %s: %.1f s" % (half, args.action, time.monotonic() - started))
        if facts:
            _print_table(half, facts)


if __name__ == "__main__":
    main()
