"""The lab: a real Samba AD DC and a real Kubernetes control plane on this machine (``labctl.py`` drives both)."""

import os


def cache_root():
    """Where the lab keeps built binaries and its state: $WGMSA_CACHE or ~/.cache/wincontainers-gmsa."""
    return os.environ.get("WGMSA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "wincontainers-gmsa")


def default_state_dir():
    """The lab's state directory, shared by both halves: $WGMSA_LAB_DIR or <cache root>/lab."""
    return os.environ.get("WGMSA_LAB_DIR") or os.path.join(cache_root(), "lab")
