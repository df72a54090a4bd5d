"""Shared runner for the cluster modules' unit tests."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_offline(monkeypatch, capsys):
    """Run a cluster module's main() with ``args`` and return its JSON result; reaching for the cluster fails the test."""

    def no_cluster(*_args, **_kwargs):
        raise AssertionError("the module reached for the cluster")

    def run_module(module, args):
        monkeypatch.setattr(module, "Cluster", no_cluster)
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run_module
