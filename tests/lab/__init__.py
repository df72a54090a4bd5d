"""The lab: a real Samba AD DC and a real Kubernetes control plane on this machine (``labctl.py`` drives both).

Importing the package makes the checkout importable as ``ansible_collections.wincontainers.gmsa``, since the
harness reuses the collection's own code (its TLS builder, for one): ansible-test wants the collection at
``.../ansible_collections/wincontainers/gmsa``, and a git checkout is usually elsewhere, so a symlinked tree
under ``.cache/collections`` stands in (the layout hack/collections-path.sh makes for Ansible).
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collections_root():
    parts = REPO_ROOT.split(os.sep)
    if parts[-3:] == ["ansible_collections", "wincontainers", "gmsa"]:
        return os.sep.join(parts[:-3])
    tree = os.path.join(REPO_ROOT, ".cache", "collections")
    link = os.path.join(tree, "ansible_collections", "wincontainers", "gmsa")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO_ROOT, link)
    return tree


# What ANSIBLE_COLLECTIONS_PATH names for playbooks that must run this checkout (and nothing installed elsewhere).
COLLECTIONS_PATH = _collections_root()
if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)


def cache_root():
    """Where the lab keeps built binaries and its state: $WGMSA_CACHE or ~/.cache/wincontainers-gmsa."""
    return os.environ.get("WGMSA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "wincontainers-gmsa")


def default_state_dir():
    """The lab's state directory, shared by both halves: $WGMSA_LAB_DIR or <cache root>/lab."""
    return os.environ.get("WGMSA_LAB_DIR") or os.path.join(cache_root(), "lab")
