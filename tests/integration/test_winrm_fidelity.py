# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What Windows refuses, the WS-Management double refuses too; and the winrm transport stays within it.

Each refusal is first shown on the double with the real pywinrm (so the double can fail), then the transport
is shown to pass where the naive way would not.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest
from winrm.protocol import Protocol

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    DomainConnectionError,
    DomainError,
    open_domain_client,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._winrm_transport import CMD_LINE_LIMIT, POWERSHELL, POWERSHELL_ARGUMENTS, encode_command

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")


@pytest.fixture
def shell(https_endpoint, winrm_params, tls_files):
    """A raw pywinrm shell on the double, to send what the transport never would."""
    protocol = Protocol(
        f"https://127.0.0.1:{https_endpoint.port}/wsman", transport="ntlm", username=winrm_params["domain_username"],
        password=winrm_params["domain_password"], ca_trust_path=tls_files[2], proxy=None,
    )
    shell_id = protocol.open_shell()
    yield protocol, shell_id
    protocol.close_shell(shell_id)


def run_raw(shell, script: str, stdin: str, console_mode_stdin: bool = False) -> tuple[bytes, bytes, int]:
    protocol, shell_id = shell
    command_id = protocol.run_command(shell_id, POWERSHELL, [*POWERSHELL_ARGUMENTS, encode_command(script)], console_mode_stdin=console_mode_stdin)
    try:
        protocol.send_command_input(shell_id, command_id, stdin, end=True)
        return protocol.get_command_output(shell_id, command_id)
    finally:
        protocol.cleanup_command(shell_id, command_id)


def request(operation: str, data: dict) -> str:
    return json.dumps({"script": _ps_scripts.build_script(operation), "input": data, "server": ""})


# --- 1. stdin in pipe mode, and no silent run on missing input ----------------------------------------------

def test_pipe_mode_stdin_runs(shell):
    stdout, _stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, request("kds_root_keys", {}))
    assert code == 0 and json.loads(stdout)["result"]["keys"]


def test_console_mode_stdin_is_refused(shell):
    # pywinrm's default (console_mode_stdin=True): on Windows ReadToEnd would wait for an end of file forever.
    stdout, stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, request("kds_root_keys", {}), console_mode_stdin=True)
    assert code == 1 and not stdout
    assert b"WINRS_CONSOLEMODE_STDIN" in stderr


def test_empty_stdin_fails_loudly(shell):
    stdout, _stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, "")
    assert code == 1
    assert json.loads(stdout)["error"]["message"] == "no request arrived on standard input"


def test_request_without_a_script_fails_loudly(shell):
    stdout, _stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, json.dumps({"input": {"dn": "x"}}))
    assert code == 1
    assert json.loads(stdout)["error"]["message"] == "the request on standard input has no script"


@pytest.mark.parametrize("operation", sorted(_ps_scripts.OPERATIONS))
def test_every_script_refuses_input_that_lacks_a_key(shell, operation):
    keys = _ps_scripts.input_keys(operation)
    if not keys:
        stdout, _stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, json.dumps({"script": _ps_scripts.build_script(operation), "server": ""}))
        assert code == 1 and json.loads(stdout)["error"]["message"] == "the request carries no input document"
        return
    stdout, _stderr, code = run_raw(shell, _ps_scripts.BOOTSTRAP, request(operation, {key: None for key in keys[1:]}))
    assert code == 1
    assert json.loads(stdout)["error"]["message"] == f"the input document lacks the key '{keys[0]}'"


def test_transport_reports_a_missing_key_naming_it(winrm_params):
    with open_domain_client(winrm_params) as client:
        with pytest.raises(DomainError, match="container_exists failed: the input document lacks the key 'dn'"):
            client.run("container_exists", {})


# --- 2. no command-line limit ----------------------------------------------------------------------------------

def test_bootstrap_is_far_below_the_cmd_exe_limit():
    command_line = " ".join([POWERSHELL, *POWERSHELL_ARGUMENTS, encode_command(_ps_scripts.BOOTSTRAP)])
    assert len(command_line) < CMD_LINE_LIMIT // 4, len(command_line)


def test_command_line_over_the_limit_is_refused(shell):
    padded = _ps_scripts.BOOTSTRAP + "\n# " + "x" * CMD_LINE_LIMIT
    stdout, stderr, code = run_raw(shell, padded, request("kds_root_keys", {}))
    assert code == 1 and not stdout
    assert stderr.startswith(b"The command line is too long.")


def test_script_larger_than_the_limit_runs(monkeypatch, winrm_params, samba_dc):
    # Padded until -EncodedCommand alone would be over cmd.exe's limit: as a command line it could not run.
    padding = "\n# padding so that the script is longer than a command line may be\n" * 120
    monkeypatch.setitem(_ps_scripts.OPERATIONS, "domain_facts", _ps_scripts.OPERATIONS["domain_facts"] + padding)
    assert len(encode_command(_ps_scripts.build_script("domain_facts"))) > CMD_LINE_LIMIT
    with open_domain_client(winrm_params) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]


# --- 3. one DC per run -------------------------------------------------------------------------------------------

def test_every_script_of_a_run_uses_the_dc_the_first_one_found(winrm_params, powershell_host):
    before = len(powershell_host.servers)
    with open_domain_client(winrm_params) as client:
        client.domain_facts()
        client.kds_root_keys()
        client.find_gmsas(["nosuchaccount"])
        pinned = client._pinned_server
    servers = powershell_host.servers[before:]
    assert pinned and servers == [pinned] * 3


# --- 3. New-ADUser's partial creation, and the identity script that avoids it ------------------------------------

def test_new_aduser_with_a_refused_password_leaves_a_disabled_user(powershell_host, ldap_params):
    # The double's model of the cmdlet: what the script must not rely on.
    name = f"nau{secrets.token_hex(4)}"
    with powershell_host.process():
        facts = powershell_host.ldap.domain_facts()
        data = {"name": name, "container": f"CN=Users,{facts.distinguished_name}", "description": None, "password_never_expires": False}
        with pytest.raises(DomainError):
            powershell_host._new_ad_user(data, password="short")
    with open_domain_client(ldap_params) as client:
        left = client.find_user(name)
        assert left is not None and left.enabled is False
        client.delete_user(left)


def test_identity_with_a_refused_password_leaves_nothing(winrm_params, ldap_params, powershell_host):
    name = f"rfu{secrets.token_hex(4)}"
    with open_domain_client(winrm_params) as client:
        container = f"CN=Users,{client.domain_facts().distinguished_name}"
        with pytest.raises(DomainError, match="create_user failed"):
            client.create_user(name, container, "short", None, True, False)
        assert client.find_user(name) is None
        password = f"Aa1-{secrets.token_urlsafe(12)}"
        user = client.create_user(name, container, password, None, True, False)
        assert user.enabled and client.credentials_valid(name, password)
        client.delete_user(user)


# --- 4. authentication -----------------------------------------------------------------------------------------

def authentications(endpoint, since: int) -> list:
    return endpoint.authentications[since:]


def test_kerberos_over_https_gets_its_ticket_from_the_password(kerberos_params, https_endpoint, samba_dc, monkeypatch):
    monkeypatch.delenv("KRB5CCNAME", raising=False)  # no cache to fall back on: the ticket must come from the password
    before = len(https_endpoint.authentications)
    with open_domain_client(kerberos_params) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]
        ccache = os.environ["KRB5CCNAME"].removeprefix("FILE:")
        assert oct(os.stat(ccache).st_mode & 0o777) == "0o600"
    assert authentications(https_endpoint, before) == [("kerberos", False)]
    assert "KRB5CCNAME" not in os.environ and not os.path.exists(ccache)


def test_kerberos_over_http_encrypts_the_messages(kerberos_params, http_endpoint, samba_dc):
    before, encrypted = len(http_endpoint.authentications), http_endpoint.encrypted_messages
    params = dict(kerberos_params, domain_tls="none", domain_port=http_endpoint.port, domain_ca_cert=None)
    with open_domain_client(params) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]
    assert authentications(http_endpoint, before) == [("kerberos", False)]
    assert http_endpoint.encrypted_messages - encrypted >= 5  # Create, Command, Send, Receive, Signal, Delete


def test_kerberos_delegation_forwards_the_ticket(kerberos_params, https_endpoint, samba_dc):
    before = len(https_endpoint.authentications)
    with open_domain_client(dict(kerberos_params, domain_kerberos_delegation=True)) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]
    assert authentications(https_endpoint, before) == [("kerberos", True)]


def test_kerberos_with_a_wrong_password_names_the_principal(kerberos_params, samba_dc):
    with pytest.raises(AuthenticationFailed) as raised:
        open_domain_client(dict(kerberos_params, domain_password="not-the-password"))
    assert f"{samba_dc['admin_user']}@{samba_dc['realm']}" in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    assert "KRB5CCNAME" not in os.environ


def test_kerberos_needs_the_principal_form(kerberos_params, samba_dc):
    with pytest.raises(DomainError, match="^domain_username: Kerberos needs the user principal form"):
        open_domain_client(dict(kerberos_params, domain_username=f"{samba_dc['netbios_name']}\\{samba_dc['admin_user']}"))


def test_environment_proxies_are_not_used(winrm_params, samba_dc, monkeypatch):
    # A proxy that does not exist: a transport that followed the environment could not reach the endpoint.
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with open_domain_client(winrm_params) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]
    with pytest.raises(DomainConnectionError, match="cannot reach the WinRM service"):
        with open_domain_client(dict(winrm_params, domain_proxy="http://127.0.0.1:9", domain_timeout=10)) as client:
            client.domain_facts()


def test_credssp_over_https_delegates_the_password(credssp_params, https_endpoint, samba_dc):
    before = len(https_endpoint.authentications)
    with open_domain_client(credssp_params) as client:
        assert client.domain_facts().netbios_name == samba_dc["netbios_name"]
    [(protocol, credential)] = authentications(https_endpoint, before)
    # What the management host gets to reach the DC with: the user's own password (the double hop).
    assert protocol == "credssp"
    assert (credential.username, credential.password) == ("winrm-admin", credssp_params["domain_password"])


def test_credssp_over_http_encrypts_and_chunks_large_messages(credssp_params, http_endpoint):
    before, encrypted, chunked = len(http_endpoint.authentications), http_endpoint.encrypted_messages, http_endpoint.chunked_messages
    params = dict(credssp_params, domain_tls="none", domain_port=http_endpoint.port, domain_ca_cert=None)
    names = [f"nobody{index:05d}" for index in range(2000)]
    with open_domain_client(params) as client:
        # The Send carrying these names is above 16 KiB: pywinrm splits it into chunks, the endpoint joins them.
        assert client.resolve_principals(names) == {}
    assert [protocol for protocol, _credential in authentications(http_endpoint, before)] == ["credssp"]
    assert http_endpoint.encrypted_messages - encrypted >= 5
    assert http_endpoint.chunked_messages - chunked == 1


def test_credssp_over_http_reads_chunked_answers(credssp_params, http_endpoint):
    # AD matches names case-insensitively: 150 spellings of one group give an answer above 16 KiB.
    spellings = ["".join(c.upper() if bit == "1" else c for c, bit in zip("domainadmins", f"{index:012b}")) for index in range(150)]
    spellings = [f"{spelling[:6]} {spelling[6:]}" for spelling in spellings]
    params = dict(credssp_params, domain_tls="none", domain_port=http_endpoint.port, domain_ca_cert=None)
    chunked = http_endpoint.chunked_answers
    with open_domain_client(params) as client:
        found = client.resolve_principals(spellings)
    assert len(found) == 150 and len({principal.sid for principal in found.values()}) == 1
    assert http_endpoint.chunked_answers - chunked == 1
