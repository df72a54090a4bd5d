"""tests/awx/ee.py: the lab builds the collection's own EE definition, changing only what its docstring lists."""

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
        {"name": "collections/wincontainers.gmsa", "type": "dir"},
        {"name": "collections/kubernetes.core", "version": ">=6.0.0,<7.0.0", "type": "dir"},
    ]
