"""Build the execution environment image from extensions/ee with podman, on a Debian base made here.

No registry is reachable from our machines, so nothing is pulled: the base image is a Debian root file system
made by debootstrap through the Debian mirror and imported into podman; ansible-builder then builds the
collection's own definition (extensions/ee/execution-environment.yml) on it, with four lab-only overrides:

- the base image (the definition names CentOS Stream, from a registry);
- Debian's interpreter, pip and package manager (apt behind the dnf-style shim ansible-builder calls);
- kubernetes.core from the copy the virtual environment's ``ansible`` package ships (Galaxy is unreachable);
- this checkout's collection, built and installed under the lab directory rather than build/.

Debian trixie, not bookworm: the definition pins ansible-core 2.21, which needs Python >= 3.12 (trixie has 3.13,
bookworm 3.11). The image is tagged with a digest of everything it is built from, so an unchanged checkout
reuses it and any change builds anew.

    python -m tests.awx.ee        # build what is missing, print the image name
"""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

from tests.awx import awx_dir, podman_env
from tests.lab import REPO_ROOT

DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_REPOSITORY = "localhost/wincontainers-gmsa-base"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
EE_REPOSITORY = "localhost/wincontainers-gmsa-ee"
DEFINITION = os.path.join(REPO_ROOT, "extensions", "ee", "execution-environment.yml")
BIN = os.path.dirname(sys.executable)
# ansible-builder drives its package manager as it drives dnf: "install -y PKGS", "upgrade -y", "clean all".
APT_SHIM = """#!/bin/sh
# dnf-style front end to apt-get for ansible-builder (options.package_manager_path).
set -e
command=$1
shift
case "$command" in
  install|upgrade)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive exec apt-get "$command" -qq --no-install-recommends "$@" ;;
  clean)
    apt-get clean
    rm -rf /var/lib/apt/lists/* ;;
  *)
    exec apt-get "$command" "$@" ;;
esac
"""
APT_SHIM_PATH = "/usr/local/sbin/apt-dnf"


class ImageError(Exception):
    """The image could not be built; the message says which step and why."""


def _run(command, log_name, env=None, cwd=None):
    """Run a build step at low priority (the machine is shared); its output goes to a log under the lab directory."""
    log_path = os.path.join(awx_dir(), "ee", log_name + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(["nice", "-n", "10"] + command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        with open(log_path, encoding="utf-8") as log:
            raise ImageError("%s failed (exit %d), see %s:\n%s" % (command[0], result.returncode, log_path, log.read()[-3000:]))


def _podman(*args, env):
    return subprocess.run(["podman"] + list(args), env=env, capture_output=True, text=True, check=False)


def image_exists(name, env):
    return _podman("image", "exists", name, env=env).returncode == 0


def _pem_certificates(path):
    with open(path, encoding="ascii", errors="replace") as bundle:
        return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", bundle.read(), re.DOTALL)


def base_image_name():
    """The base image's name: the suite, and a digest of what this machine adds to it (shim, trusted CAs)."""
    digest = hashlib.sha256(APT_SHIM.encode())
    digest.update("".join(_pem_certificates(HOST_CA_BUNDLE)).encode())
    return "%s:%s-%s" % (BASE_REPOSITORY, DEBIAN_SUITE, digest.hexdigest()[:12])


def _add_host_trust(rootfs):
    """Trust in the image what this machine trusts: its egress may re-sign TLS (PyPI) with a CA of its own."""
    debian = set(_pem_certificates(os.path.join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt")))
    local = os.path.join(rootfs, "usr", "local", "share", "ca-certificates")
    shutil.rmtree(local, ignore_errors=True)
    os.makedirs(local)
    for number, certificate in enumerate(c for c in _pem_certificates(HOST_CA_BUNDLE) if c not in debian):
        with open(os.path.join(local, "host-%03d.crt" % number), "w", encoding="ascii") as target:
            target.write(certificate + "\n")
    _run(["chroot", rootfs, "update-ca-certificates"], "update-ca-certificates")


def ensure_base_image(env, log=print):
    """The Debian base image, debootstrapped and imported once per base_image_name()."""
    name = base_image_name()
    if image_exists(name, env):
        return name
    if not shutil.which("debootstrap"):
        raise ImageError("debootstrap is not installed (hack/awx-deps.sh installs it)")
    rootfs = os.path.join(awx_dir(), "ee", "rootfs-" + DEBIAN_SUITE)
    partial = rootfs + ".partial"
    if not os.path.isdir(rootfs):
        log("debootstrap %s from %s ..." % (DEBIAN_SUITE, DEBIAN_MIRROR))
        shutil.rmtree(partial, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates", DEBIAN_SUITE, partial, DEBIAN_MIRROR], "debootstrap")
        # Renamed only when complete, so an interrupted debootstrap is never imported.
        os.replace(partial, rootfs)
    shim = os.path.join(rootfs, APT_SHIM_PATH.lstrip("/"))
    with open(shim, "w", encoding="utf-8") as shim_file:
        shim_file.write(APT_SHIM)
    os.chmod(shim, 0o755)
    _add_host_trust(rootfs)
    archive = os.path.join(awx_dir(), "ee", "rootfs.tar")
    _run(["tar", "--numeric-owner", "-C", rootfs, "-cf", archive, "."], "rootfs-tar")
    # A container's pip may install into the image's Python: the image is the environment (PEP 668).
    _run(["podman", "import", "--change", "ENV PIP_BREAK_SYSTEM_PACKAGES=1", "--change", "CMD [\"/bin/bash\"]", archive, name], "import", env=env)
    os.unlink(archive)
    return name


def _snapshot(target):
    """A copy of the checkout's files (tracked, and new ones git does not ignore) to build the collection from.

    Others may edit the checkout meanwhile; ansible-galaxy hashes each file, then reads it again into the tarball,
    and refuses the result when a file changed between the two.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    shutil.rmtree(target, ignore_errors=True)
    for name in filter(None, listed):
        source = os.path.join(REPO_ROOT, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
            shutil.copy2(source, os.path.join(target, name))
    return target


def _collection_artifacts(workdir):
    """This checkout's collection built and installed, and kubernetes.core; returns their directories."""
    dist = os.path.join(workdir, "dist")
    installed = os.path.join(workdir, "installed")
    shutil.rmtree(dist, ignore_errors=True)
    shutil.rmtree(installed, ignore_errors=True)
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", _snapshot(os.path.join(workdir, "source")), "--output-path", dist], "collection-build")
    (tarball,) = [name for name in os.listdir(dist) if name.startswith("wincontainers-gmsa-")]
    # --force: a copy elsewhere on the collections path (~/.ansible) must not make ansible-galaxy skip it.
    install = [os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", installed, os.path.join(dist, tarball)]
    _run(install, "collection-install")
    collection = os.path.join(installed, "ansible_collections", "wincontainers", "gmsa")

    # The copy of kubernetes.core that the virtual environment's ansible package ships: an installed collection
    # (MANIFEST.json), which ansible-galaxy installs as a "dir" requirement.
    kubernetes_core = list(importlib.util.find_spec("ansible_collections.kubernetes.core").submodule_search_locations)[0]
    return collection, kubernetes_core


def _digest(paths, extra):
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        with open(path, "rb") as content:
            digest.update(content.read())
    return digest.hexdigest()[:12]


def lab_definition(workdir, base, collection, kubernetes_core):
    """The definition to build here: the collection's own, with the overrides the module docstring lists."""
    with open(DEFINITION, encoding="utf-8") as source:
        definition = yaml.safe_load(source)
    ee_dir = os.path.dirname(DEFINITION)
    with open(os.path.join(ee_dir, definition["dependencies"]["galaxy"]), encoding="utf-8") as source:
        galaxy = yaml.safe_load(source)
    for entry in galaxy["collections"]:
        if entry["name"] == "kubernetes.core":
            entry.update(name="collections/kubernetes.core", type="dir")
    definition["images"]["base_image"]["name"] = base
    definition["dependencies"]["python_interpreter"] = {"package_system": "python3", "python_path": "/usr/bin/python3"}
    definition["dependencies"]["galaxy"] = galaxy
    for kind in ("python", "system"):
        definition["dependencies"][kind] = os.path.normpath(os.path.join(ee_dir, definition["dependencies"][kind]))
    definition["additional_build_files"] = [
        {"src": collection, "dest": "collections/wincontainers.gmsa"},
        {"src": kubernetes_core, "dest": "collections/kubernetes.core"},
    ]
    definition["options"]["package_manager_path"] = APT_SHIM_PATH
    # Debian's Python has pip from python3-pip and disables ensurepip, which ansible-builder would run.
    definition["options"]["skip_pip_install"] = True
    path = os.path.join(workdir, "execution-environment.yml")
    with open(path, "w", encoding="utf-8") as target:
        yaml.safe_dump(definition, target, sort_keys=False)
    return path, definition


def ensure_image(log=print):
    """The execution environment image for this checkout, built when missing; returns its name.

    $WGMSA_EE_IMAGE names an image already built to use instead (a developer iterating on tests while others
    change the collection: each change means a rebuild); it must exist.
    """
    env = podman_env()
    chosen = os.environ.get("WGMSA_EE_IMAGE")
    if chosen:
        if not image_exists(chosen, env):
            raise ImageError("WGMSA_EE_IMAGE=%s: no such image in the lab's podman store" % chosen)
        log("using %s (WGMSA_EE_IMAGE), not an image of this checkout" % chosen)
        return chosen
    base = ensure_base_image(env, log)
    workdir = os.path.join(awx_dir(), "ee", "build")
    collection, kubernetes_core = _collection_artifacts(workdir)
    definition_path, definition = lab_definition(workdir, base, collection, kubernetes_core)
    base_id = _podman("image", "inspect", "--format", "{{.Id}}", base, env=env).stdout.strip()
    key = _digest(
        [definition_path, definition["dependencies"]["python"], definition["dependencies"]["system"], os.path.join(collection, "FILES.json"),
         os.path.join(kubernetes_core, "MANIFEST.json")],
        base_id,
    )
    image = "%s:%s" % (EE_REPOSITORY, key)
    if image_exists(image, env):
        return image
    log("building %s with ansible-builder ..." % image)
    started = time.monotonic()
    _run(
        [os.path.join(BIN, "ansible-builder"), "build", "-f", definition_path, "-c", os.path.join(workdir, "context"),
         "--container-runtime", "podman", "-t", image, "-t", EE_REPOSITORY + ":latest", "-v", "2",
         # The build's RUN steps reach the Debian mirror and PyPI through the host's network: podman's bridge
         # networks need iptables, which this machine kind lacks.
         "--extra-build-cli-args=--network=host"],
        "ansible-builder",
        env=env,
    )
    log("built %s in %.0f s" % (image, time.monotonic() - started))
    # Earlier checkouts' images go; --no-prune keeps their parents, the build cache of the unchanged stages.
    listed = _podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=" + EE_REPOSITORY, env=env).stdout.split()
    for old in set(listed) - {image, EE_REPOSITORY + ":latest"}:
        _podman("rmi", "--no-prune", old, env=env)
    return image


def main():
    try:
        image = ensure_image()
    except ImageError as error:
        sys.exit("execution environment image: %s" % error)
    print(image)


if __name__ == "__main__":
    main()
