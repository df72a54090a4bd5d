"""tests/awx/ee.py: the lab builds the collection's own EE definition, changing only what its docstring lists."""

import os
import subprocess

import yaml

from tests.awx import ee


def test_lab_definition_overrides_only_the_base_interpreter_package_manager_and_collection_sources(tmp_path):
    path, lab = ee.lab_definition(str(tmp_path), "localhost/base:x", "/built/wincontainers/gmsa", "/site/kubernetes/core")
    with open(ee.DEFINITION, encoding="utf-8") as source:
        original = yaml.safe_load(source)
    with open(path, encoding="utf-8") as written:
        assert yaml.safe_load(written) == lab

    assert lab["images"]["base_image"]["name"] == "localhost/base:x"
    assert lab["dependencies"]["python_interpreter"] == {"package_system": "python3", "python_path": "/usr/bin/python3"}
    assert (lab["options"]["package_manager_path"], lab["options"]["skip_pip_install"]) == (ee.APT_SHIM_PATH, True)
    assert lab["options"]["tags"] == original["options"]["tags"]
    assert lab["additional_build_files"] == [
        {"src": "/built/wincontainers/gmsa", "dest": "collections/wincontainers.gmsa"},
        {"src": "/site/kubernetes/core", "dest": "collections/kubernetes.core"},
    ]
    # The same Python and system requirements files, ansible-core and ansible-runner pins.
    for key in ("ansible_core", "ansible_runner"):
        assert lab["dependencies"][key] == original["dependencies"][key]
    assert lab["dependencies"]["python"].endswith("/requirements.txt")
    assert lab["dependencies"]["system"].endswith("/bindep.txt")
    assert lab["dependencies"]["galaxy"]["collections"] == [
        {"name": "collections/kubernetes.core", "version": ">=6.0.0,<7.0.0", "type": "dir"},
    ]
    assert lab["additional_build_steps"] == original["additional_build_steps"]


def test_collection_is_copied_in_after_the_layers_that_install_the_wheels(tmp_path):
    """A change to the collection must not invalidate the layers that compile the Kerberos wheels (minutes)."""
    collection = tmp_path / "gmsa"
    collection.mkdir()
    (collection / "MANIFEST.json").write_text("{}")
    path, _lab = ee.lab_definition(str(tmp_path), "localhost/base:x", str(collection), str(collection))
    context = tmp_path / "context"
    # The file name is fixed: by default ansible-builder names it after the runtime it finds (Dockerfile where docker is installed).
    subprocess.run([os.path.join(ee.BIN, "ansible-builder"), "create", "-f", path, "-c", str(context), "--output-filename", "Containerfile"],
                   check=True, capture_output=True)
    steps = (context / "Containerfile").read_text().splitlines()
    copy_collection = steps.index("COPY _build/collections/wincontainers.gmsa /usr/share/ansible/collections/ansible_collections/wincontainers/gmsa")
    final_stage = steps.index("FROM base AS final")
    wheels_installed = steps.index("RUN /output/scripts/install-from-bindep && rm -rf /output/wheels")
    assert final_stage < wheels_installed < copy_collection
    # Nothing before the final stage's last layers installs it: the galaxy stage installs kubernetes.core only.
    assert not any("wincontainers" in step for step in steps[:copy_collection])
