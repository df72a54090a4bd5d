"""The execution environment definition (extensions/ee/) produces a build context that holds what the EE needs.

No container engine exists on the machines this runs on, so only ``ansible-builder create`` is validated: the
Containerfile and the build context an ``ansible-builder build`` would use, never a built image. The definition
is copied into a scratch tree laid out like the checkout, with the collection built and installed there the way
``make build`` does, so the run neither needs nor touches the checkout's build/ directory.

Run from the repository root: ``python -m pytest tests/integration/test_execution_environment.py``.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def run(*command, cwd=None):
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The build context ``ansible-builder create`` writes for a checkout whose collection has been built."""
    tree = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "extensions" / "ee", tree / "extensions" / "ee")
    for name in ("requirements.txt", "bindep.txt"):
        shutil.copy(ROOT / name, tree / name)
    run(str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(tree / "build" / "dist"))
    (tarball,) = (tree / "build" / "dist").glob("wincontainers-gmsa-*.tar.gz")
    # --force: without it ansible-galaxy skips a collection it finds in any configured path, e.g. ~/.ansible.
    run(str(BIN / "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p", str(tree / "build" / "installed"), str(tarball))

    output = tree / "context"
    run(str(BIN / "ansible-builder"), "create", "-f", str(tree / "extensions" / "ee" / "execution-environment.yml"), "-c", str(output),
        "--output-filename", "Containerfile")
    return output


def test_containerfile_builds_on_an_overridable_base_with_python_and_ansible(context):
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert 'ARG PYPKG="python3.12"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    assert "ansible-core>=2.21.5,<2.22" in containerfile
    assert "ansible-runner>=2.4.3,<2.5" in containerfile


def test_containerfile_installs_collections_python_and_system_requirements(context):
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "COPY --from=galaxy /usr/share/ansible /usr/share/ansible" in containerfile
    # The assemble step reads requirements.txt and bindep.txt; the final stage installs what bindep lists.
    assert "RUN /output/scripts/assemble" in containerfile
    assert "/output/scripts/install-from-bindep" in containerfile


def test_context_carries_the_collections_python_and_system_requirements(context):
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
    collections = {entry["name"]: entry for entry in yaml.safe_load((build / "requirements.yml").read_text())["collections"]}
    assert collections["kubernetes.core"]["version"] == yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"]["kubernetes.core"]
    # This collection is not a galaxy requirement: the final stage copies it in, after the wheel layers.
    assert set(collections) == {"kubernetes.core"}


def test_context_carries_this_collection_as_built_and_the_final_stage_copies_it_in(context):
    manifest = json.loads((context / "_build" / "collections" / "wincontainers.gmsa" / "MANIFEST.json").read_text())
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (galaxy["namespace"], galaxy["name"], galaxy["version"])
    containerfile = (context / "Containerfile").read_text()
    assert "COPY _build/collections/wincontainers.gmsa /usr/share/ansible/collections/ansible_collections/wincontainers/gmsa" in containerfile
