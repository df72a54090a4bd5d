"""Fixtures shared by the domain suites: one connection per transport, and modules run in-process over it.

``ldap_params`` and ``winrm_params`` come from the tests.integration.wsman_endpoint plugin, which those suites load.
"""

import json

import pytest
from ansible.module_utils.testing import patch_module_args


@pytest.fixture(params=["ldap", "winrm"])
def params(request, ldap_params) -> dict:
    """The domain modules' connection options, once for each transport (the winrm endpoint starts only when needed)."""
    return ldap_params if request.param == "ldap" else request.getfixturevalue("winrm_params")


@pytest.fixture
def run(capsys, params):
    """Run a module in this process with the transport's connection options; return its JSON result."""

    def run_module(module, args: dict, **connection) -> dict:
        module_args = {key: value for key, value in dict(params, **connection).items() if value is not None}
        with patch_module_args(dict(module_args, **args)), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run_module
