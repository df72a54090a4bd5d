"""Bring the whole lab up or down: the Samba AD DC and the Kubernetes control plane (with served webhooks).

    python -m tests.lab.labctl up|down|status [--only ad|kube] [--state-dir DIR]   (from the repository root;
    `make lab-up`, `make lab-down`, `make lab-status` do the same)

State lives in $WGMSA_LAB_DIR (default ~/.cache/wincontainers-gmsa/lab). Secrets are never printed.
"""

import argparse
import sys
import time

from tests.lab import default_state_dir, kube, samba, webhook

# What the status table shows of each half; anything else (passwords included) stays out.
SHOWN = {
    "ad": ("running", "host", "ldap_port", "ldaps_port", "realm", "krb5_config", "ca_cert", "state_dir"),
    "kube": ("running", "server", "kubeconfig", "processes", "webhooks", "state_dir"),
}


def _kube_up(state_dir):
    kube.up(state_dir)
    return kube_status(state_dir)


def _kube_down(state_dir):
    webhook.stop_all(state_dir)
    kube.down(state_dir)


def kube_status(state_dir):
    return dict(kube.status(state_dir), webhooks=len(webhook.status(state_dir)))


HALVES = {
    "ad": {"up": samba.up, "down": samba.down, "status": samba.status},
    "kube": {"up": _kube_up, "down": _kube_down, "status": kube_status},
}


def _print_table(half, facts):
    for key in SHOWN[half]:
        if key in facts:
            print("  %-5s %-12s %s" % (half, key, facts[key]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--only", choices=tuple(HALVES))
    parser.add_argument("--state-dir", default=default_state_dir())
    args = parser.parse_args(argv)
    halves = [args.only] if args.only else list(HALVES)
    for half in halves:
        started = time.monotonic()
        try:
            facts = HALVES[half][args.action](args.state_dir)
        except (kube.LabError, samba.LabError, webhook.WebhookError) as error:
            sys.exit("lab %s %s failed: %s" % (half, args.action, error))
        print("%s %s: %.1f s" % (half, args.action, time.monotonic() - started))
        if facts:
            _print_table(half, facts)


if __name__ == "__main__":
    main()
