# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The AWX credential types (extensions/awx/credential_types/) feed the domain modules what they read.

Injection is rendered the way AWX renders it (CredentialType.inject_credential in
awx/main/models/credential/__init__.py): empty inputs are left out of the template namespace, boolean inputs
the credential does not set are false, every ``file`` template is written (even when empty) and every ``env``
variable is set (to an empty string when its input is empty).
"""

from __future__ import annotations

import pathlib
import re

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.wincontainers.gmsa.plugins.doc_fragments.domain_connection import ModuleDocFragment
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import DOMAIN_CONNECTION_ARGUMENT_SPEC, ConnectionSettings
from tests.awx_credentials import CREDENTIAL_TYPES_DIR, awx_inject, load

# What AWX accepts in a custom credential type input (awx/main/fields.py, CredentialTypeInputField.schema).
INPUT_KEYS = {"id", "label", "type", "secret", "multiline", "format", "choices", "default", "help_text", "ask_at_runtime"}
INPUT_ID_RE = re.compile(r"[a-zA-Z_]+[a-zA-Z0-9_]*")


def connection_params(env: dict, monkeypatch) -> dict:
    """The domain connection options a module gets from ``env`` alone, checked as the modules check them."""
    for name in _fallback_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with patch_module_args({}):
        try:
            module = AnsibleModule(argument_spec=DOMAIN_CONNECTION_ARGUMENT_SPEC)
        except SystemExit:
            pytest.fail("the module refused the injected environment (see the captured stdout)")
    ConnectionSettings.from_params(module.params)
    return module.params


def _fallback_env_names() -> dict[str, str]:
    """Environment variable -> module option, from the domain modules' argument spec."""
    return {spec["fallback"][1][0]: option for option, spec in DOMAIN_CONNECTION_ARGUMENT_SPEC.items() if "fallback" in spec}


@pytest.mark.parametrize("name", sorted(path.name for path in CREDENTIAL_TYPES_DIR.glob("*.yml")))
def test_credential_type_is_what_the_awx_api_takes(name):
    credential_type = load(name)
    assert set(credential_type) == {"name", "description", "kind", "inputs", "injectors"}
    assert credential_type["kind"] in ("cloud", "net"), "AWX creates custom credential types of these kinds only"
    fields = {field["id"]: field for field in credential_type["inputs"]["fields"]}
    for field in fields.values():
        assert set(field) <= INPUT_KEYS and {"id", "label", "type"} <= set(field), field
        assert INPUT_ID_RE.fullmatch(field["id"]) and field["id"] != "tower", field["id"]
        assert field["type"] in ("string", "boolean")
        if "choices" in field and "default" in field:
            assert field["default"] in field["choices"]
    assert set(credential_type["inputs"].get("required", [])) <= set(fields)

    referenced = set()
    for templates in credential_type["injectors"].values():
        for template in templates.values():
            referenced |= meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))
    assert referenced - {"tower"} <= set(fields), "injectors may only use the type's own inputs"


@pytest.mark.parametrize("name", sorted(path.name for path in CREDENTIAL_TYPES_DIR.glob("*.yml")))
def test_passwords_are_secret(name):
    for field in load(name)["inputs"]["fields"]:
        assert field.get("secret", False) == ("password" in field["id"]), field["id"]


def test_domain_connection_injects_only_what_the_domain_modules_read():
    injected = set(load("gmsa_domain_connection.yml")["injectors"]["env"])
    fallbacks = _fallback_env_names()
    assert injected <= set(fallbacks)
    # Tuning, the network path and Kerberos configuration belong to the execution environment, not to a credential.
    assert set(fallbacks) - injected == {"GMSA_DOMAIN_TIMEOUT", "GMSA_DOMAIN_PROXY", "KRB5_CONFIG"}
    for name in injected:
        assert f"E({name})" in ModuleDocFragment.DOCUMENTATION, f"{name} is not documented in doc_fragments/domain_connection.py"


def test_domain_connection_with_every_input_reaches_the_modules(tmp_path, monkeypatch):
    inputs = {
        "server": "dc01.contoso.com",
        "transport": "winrm",
        "port": "5986",
        "username": "gmsa-admin@contoso.com",
        "password": "S3cret!",
        "auth": "kerberos",
        "tls": "tls",
        "skip_cert_validation": False,
        "ca_cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "kerberos_hostname": "dc01.contoso.com",
        "kerberos_delegation": True,
    }
    env, extra_vars = awx_inject(load("gmsa_domain_connection.yml"), inputs, tmp_path)
    assert extra_vars == {}
    params = connection_params(env, monkeypatch)
    assert {option: params[option] for option in params if option not in ("domain_timeout", "domain_krb5_config", "domain_proxy")} == {
        "domain_server": "dc01.contoso.com",
        "domain_transport": "winrm",
        "domain_port": 5986,
        "domain_username": "gmsa-admin@contoso.com",
        "domain_password": "S3cret!",
        "domain_auth": "kerberos",
        "domain_tls": "tls",
        "domain_validate_certs": True,
        "domain_ca_cert": env["GMSA_DOMAIN_CA_CERT"],
        "domain_kerberos_hostname": "dc01.contoso.com",
        "domain_kerberos_delegation": True,
    }
    assert pathlib.Path(params["domain_ca_cert"]).read_text() == inputs["ca_cert"]


def test_domain_connection_lab_switch_turns_certificate_validation_off(tmp_path, monkeypatch):
    inputs = {"server": "dc01.contoso.com", "port": "5986", "username": "u", "password": "p", "tls": "tls", "transport": "winrm",
              "auth": "ntlm", "skip_cert_validation": True}
    env = awx_inject(load("gmsa_domain_connection.yml"), inputs, tmp_path)[0]
    assert connection_params(env, monkeypatch)["domain_validate_certs"] is False


def test_domain_connection_with_only_the_required_inputs_reaches_the_modules(tmp_path, monkeypatch):
    inputs = {"server": "dc01.contoso.com", "username": "CONTOSO\\gmsa-admin", "password": "S3cret!"}
    env = awx_inject(load("gmsa_domain_connection.yml"), inputs, tmp_path)[0]
    params = connection_params(env, monkeypatch)
    assert (params["domain_transport"], params["domain_port"], params["domain_ca_cert"], params["domain_validate_certs"]) == ("winrm", None, None, True)


def test_portable_identity_injects_extra_vars_only(tmp_path):
    env, extra_vars = awx_inject(load("gmsa_portable_identity.yml"), {"username": "svc-gmsa-reader", "password": "Pa55w.rd"}, tmp_path)
    assert env == {}
    assert extra_vars == {"gmsa_identity_username": "svc-gmsa-reader", "gmsa_identity_password": "Pa55w.rd"}
