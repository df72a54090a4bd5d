"""Bring the whole lab up or down: the Samba AD DC and the Kubernetes control plane (with served webhooks).

    python -m tests.lab.labctl up|down|status [--only ad|kube] [--state-dir DIR] [--cluster NAME]
    (from the repository root; `make lab-up`, `make lab-down`, `make lab-status` do the same)

State lives in $WGMSA_LAB_DIR (default ~/.cache/wincontainers-gmsa/lab). The cluster's name (default "lab")
names its network namespaces: another name and state dir run a second cluster beside the first. `down` removes
everything `up` made, even after an `up` that failed half-way. Secrets are never printed.
"""

import argparse
import functools
import sys
import time

from tests.lab import default_state_dir, kube, netns, samba, webhook

# What the status table shows of each half; anything else (passwords included) stays out.
SHOWN = {
    "ad": ("running", "host", "ldap_port", "ldaps_port", "realm", "krb5_config", "ca_cert", "state_dir"),
    "kube": ("running", "server", "kubeconfig", "netns", "processes", "webhooks", "state_dir"),
}


def _kube_up(state_dir, cluster):
    webhook.ensure_running(kube.up(state_dir, cluster))
    return kube_status(state_dir, cluster)


def _kube_down(state_dir, cluster):
    try:
        webhook.stop_all(state_dir)
    finally:
        # Even if the webhook side failed: the cluster's namespaces go, with whatever still runs inside them.
        kube.down(state_dir, cluster)


def kube_status(state_dir, cluster):
    return dict(kube.status(state_dir, cluster), webhooks=len(webhook.status(state_dir)))


def _halves(cluster):
    kube_actions = {"up": _kube_up, "down": _kube_down, "status": kube_status}
    return {
        "ad": {"up": samba.up, "down": samba.down, "status": samba.status},
        "kube": {action: functools.partial(function, cluster=cluster) for action, function in kube_actions.items()},
    }


def _print_table(half, facts):
    for key in SHOWN[half]:
        if key in facts:
            print("  %-5s %-12s %s" % (half, key, facts[key]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--only", choices=("ad", "kube"))
    parser.add_argument("--state-dir", default=default_state_dir())
    parser.add_argument("--cluster", default=kube.DEFAULT_CLUSTER, help="the Kubernetes cluster's name (default: %(default)s)")
    args = parser.parse_args(argv)
    halves = _halves(args.cluster)
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
