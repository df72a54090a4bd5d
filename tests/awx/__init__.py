"""The AWX lab: an execution environment image built here, and a real AWX that runs job templates with it.

    python -m tests.awx.ee                 # build the execution environment image (make ee-image)
    python -m tests.awx.awxctl up|down|status   (make awx-up, make awx-down)

Everything stateful lives under <cache root>/awx ($WGMSA_AWX_DIR overrides it): the Debian root file system,
podman's image store, AWX's sources, virtual environment, database, logs and process ids. Podman runs rootful
with this directory's configuration (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), never the machine's defaults.
"""

import os
import resource

from tests.lab import cache_root


def awx_dir():
    """The AWX lab's state and caches: $WGMSA_AWX_DIR or <cache root>/awx."""
    return os.environ.get("WGMSA_AWX_DIR") or os.path.join(cache_root(), "awx")


def _write_if_changed(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path, encoding="utf-8") as current:
            if current.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as new:
        new.write(text)


def podman_env(base=None):
    """The environment podman, ansible-builder and ansible-runner need here, written on first use.

    crun refuses this machine kind's hybrid cgroups, so runc; podman's default ulimits exceed the hard limits (runc
    fails with EPERM), so the container gets this process's open-files limit and a process limit of its own. Images and containers stay
    under the lab's directory; the run root is on tmpfs, as podman expects.
    """
    root = os.path.join(awx_dir(), "containers")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    # runc cannot set this machine's own nproc limit in a container (EPERM, measured); 4096 is plenty for a job.
    ulimits = '"nofile=%d:%d", "nproc=4096:4096"' % nofile
    containers_conf = os.path.join(root, "containers.conf")
    storage_conf = os.path.join(root, "storage.conf")
    _write_if_changed(
        containers_conf,
        '[containers]\ndefault_ulimits = [%s]\n\n[engine]\nruntime = "runc"\n' % ulimits,
    )
    _write_if_changed(
        storage_conf,
        '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "/run/wincontainers-gmsa-awx/containers"\n' % os.path.join(root, "storage"),
    )
    return dict(os.environ if base is None else base, CONTAINERS_CONF=containers_conf, CONTAINERS_STORAGE_CONF=storage_conf)
