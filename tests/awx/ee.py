"""Build the execution environment image from extensions/ee with podman, on a Debian base made here.

No registry is reachable from our machines, so nothing is pulled: the base image is a Debian root file system
made by debootstrap through the Debian mirror and imported into podman; ansible-builder then builds the
collection's own definition (extensions/ee/execution-environment.yml) on it, with four lab-only overrides:

- the base image (the definition names CentOS Stream, from a registry);
- Debian's interpreter and package manager (Debian's apt behind the dnf-style shim ansible-builder calls);
- kubernetes.core from the copy the virtual environment's ``ansible`` package ships, as a collection artifact
  (Galaxy is unreachable);
- this checkout's collection, built and installed under the lab directory rather than build/.

Debian trixie, not bookworm: the definition pins ansible-core 2.21, which needs Python >= 3.12 (trixie has 3.13,
bookworm 3.11). The image is tagged with a digest of everything it is built from, so an unchanged checkout
reuses it and any change builds anew.

    python -m tests.awx.ee        # build what is missing, print the image name
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import yaml

from tests.awx import awx_dir, podman_env
from tests.lab import REPO_ROOT

DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_IMAGE = "localhost/wincontainers-gmsa-base:" + DEBIAN_SUITE
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


def ensure_base_image(env, log=print):
    """The Debian base image, debootstrapped and imported once."""
    if image_exists(BASE_IMAGE, env):
        return BASE_IMAGE
    if not shutil.which("debootstrap"):
        raise ImageError("debootstrap is not installed (apt-get install debootstrap podman runc)")
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
    archive = os.path.join(awx_dir(), "ee", "rootfs.tar")
    _run(["tar", "--numeric-owner", "-C", rootfs, "-cf", archive, "."], "rootfs-tar")
    # A container's pip may install into the image's Python: the image is the environment (PEP 668).
    _run(["podman", "import", "--change", "ENV PIP_BREAK_SYSTEM_PACKAGES=1", "--change", "CMD [\"/bin/bash\"]", archive, BASE_IMAGE], "import", env=env)
    os.unlink(archive)
    return BASE_IMAGE


def _collection_artifacts(workdir):
    """This checkout's collection built and installed, and kubernetes.core as an artifact; returns their paths."""
    dist = os.path.join(workdir, "dist")
    installed = os.path.join(workdir, "installed")
    shutil.rmtree(dist, ignore_errors=True)
    shutil.rmtree(installed, ignore_errors=True)
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO_ROOT, "--output-path", dist], "collection-build")
    (tarball,) = [name for name in os.listdir(dist) if name.startswith("wincontainers-gmsa-")]
    # --force: a copy elsewhere on the collections path (~/.ansible) must not make ansible-galaxy skip it.
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", installed, os.path.join(dist, tarball)], "collection-install")
    collection = os.path.join(installed, "ansible_collections", "wincontainers", "gmsa")

    # An installed collection is its artifact unpacked (MANIFEST.json, FILES.json with every file's checksum).
    import ansible_collections.kubernetes.core as kubernetes_core  # pylint: disable=import-outside-toplevel

    source = os.path.dirname(kubernetes_core.__file__)
    with open(os.path.join(source, "MANIFEST.json"), encoding="utf-8") as manifest:
        version = json.load(manifest)["collection_info"]["version"]
    with open(os.path.join(source, "FILES.json"), encoding="utf-8") as files:
        listed = [entry["name"] for entry in json.load(files)["files"] if entry["ftype"] == "file"]
    artifact = os.path.join(dist, "kubernetes-core-%s.tar.gz" % version)
    with tarfile.open(artifact, "w:gz") as tar:
        for name in ["MANIFEST.json", "FILES.json"] + listed:
            tar.add(os.path.join(source, name), arcname=name)
    return collection, artifact


def _digest(paths, extra):
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        with open(path, "rb") as content:
            digest.update(content.read())
    return digest.hexdigest()[:12]


def lab_definition(workdir, collection, kubernetes_core):
    """The definition to build here: the collection's own, with the overrides the module docstring lists."""
    with open(DEFINITION, encoding="utf-8") as source:
        definition = yaml.safe_load(source)
    ee_dir = os.path.dirname(DEFINITION)
    with open(os.path.join(ee_dir, definition["dependencies"]["galaxy"]), encoding="utf-8") as source:
        galaxy = yaml.safe_load(source)
    for entry in galaxy["collections"]:
        if entry["name"] == "kubernetes.core":
            entry.update(name="collections/" + os.path.basename(kubernetes_core), type="file")
    definition["images"]["base_image"]["name"] = BASE_IMAGE
    definition["dependencies"]["python_interpreter"] = {"package_system": "python3", "python_path": "/usr/bin/python3"}
    definition["dependencies"]["galaxy"] = galaxy
    for kind in ("python", "system"):
        definition["dependencies"][kind] = os.path.normpath(os.path.join(ee_dir, definition["dependencies"][kind]))
    definition["additional_build_files"] = [
        {"src": collection, "dest": "collections/wincontainers.gmsa"},
        {"src": kubernetes_core, "dest": "collections"},
    ]
    definition["options"]["package_manager_path"] = APT_SHIM_PATH
    path = os.path.join(workdir, "execution-environment.yml")
    with open(path, "w", encoding="utf-8") as target:
        yaml.safe_dump(definition, target, sort_keys=False)
    return path, definition


def ensure_image(log=print):
    """The execution environment image for this checkout, built when missing; returns its name."""
    env = podman_env()
    base = ensure_base_image(env, log)
    workdir = os.path.join(awx_dir(), "ee", "build")
    collection, kubernetes_core = _collection_artifacts(workdir)
    definition_path, definition = lab_definition(workdir, collection, kubernetes_core)
    base_id = _podman("image", "inspect", "--format", "{{.Id}}", base, env=env).stdout.strip()
    key = _digest(
        [definition_path, definition["dependencies"]["python"], definition["dependencies"]["system"], os.path.join(collection, "FILES.json")],
        # The artifact's name carries its version (released versions never change); its bytes carry a gzip time.
        base_id + os.path.basename(kubernetes_core),
    )
    image = "%s:%s" % (EE_REPOSITORY, key)
    if image_exists(image, env):
        return image
    log("building %s with ansible-builder ..." % image)
    started = time.monotonic()
    _run(
        [os.path.join(BIN, "ansible-builder"), "build", "-f", definition_path, "-c", os.path.join(workdir, "context"),
         "--container-runtime", "podman", "-t", image, "-t", EE_REPOSITORY + ":latest", "-v", "2"],
        "ansible-builder",
        env=env,
    )
    log("built %s in %.0f s" % (image, time.monotonic() - started))
    return image


def main():
    try:
        image = ensure_image()
    except ImageError as error:
        sys.exit("execution environment image: %s" % error)
    print(image)


if __name__ == "__main__":
    main()
