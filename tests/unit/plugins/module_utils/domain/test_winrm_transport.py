# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How the WinRM transport turns what pywinrm and PowerShell report into one clear error."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    ConnectionSettings,
    DomainConnectionError,
    DomainError,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._winrm_transport import WinRMDomainClient, clixml_to_text

CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN></Obj>'
    '<S S="Error">Import-Module : The specified module \'ActiveDirectory\' was not loaded_x000D__x000A_</S>'
    '<S S="Error">because no valid module file was found._x000D__x000A_</S></Objs>'
)


class FailingProtocol:
    """A pywinrm Protocol whose calls raise ``error`` or return ``output``."""

    def __init__(self, error=None, output=(b"", b"", 1), timeouts=0):
        self.error = error
        self.output = output
        self.timeouts = timeouts
        self.cleaned = False

    def open_shell(self):
        if self.error:
            raise self.error
        return "shell"

    def run_command(self, shell_id, command, arguments, console_mode_stdin=True, skip_cmd_shell=False):
        return "command"

    def send_command_input(self, shell_id, command_id, stdin_input, end=False):
        pass

    def get_command_output_raw(self, shell_id, command_id):
        if self.timeouts:
            self.timeouts -= 1
            raise WinRMOperationTimeoutError()
        stdout, stderr, code = self.output
        return stdout, stderr, code, True

    def cleanup_command(self, shell_id, command_id):
        self.cleaned = True

    def close_shell(self, shell_id):
        pass


def client_with(protocol, timeout: float = 60) -> WinRMDomainClient:
    settings = ConnectionSettings(
        transport="winrm", server="dc01.contoso.com", port=5986, username="CONTOSO\\admin", password="admin-secret",
        auth="ntlm", tls="tls", validate_certs=True, ca_cert=None, timeout=int(timeout),
    )
    client = WinRMDomainClient(settings, time.monotonic() + timeout)
    client._protocol = protocol
    return client


@pytest.mark.parametrize(
    "error, kind, text",
    [
        (InvalidCredentialsError("the credentials were rejected"), AuthenticationFailed, "refused the credentials of domain_username"),
        (WSManFaultError(500, "fault", "<xml/>", "Access is denied.", wsman_fault_code=5), DomainError, "fault during domain_facts: Access is denied."),
        (WinRMTransportError("http", 503, "unavailable"), DomainConnectionError, "unexpected HTTP status 503"),
        (requests.exceptions.ConnectionError("Connection refused"), DomainConnectionError, "cannot reach the WinRM service: Connection refused"),
    ],
)
def test_transport_errors_become_one_clear_message(error, kind, text):
    with pytest.raises(kind) as raised:
        client_with(FailingProtocol(error=error)).domain_facts()
    assert text in str(raised.value)
    assert "https://dc01.contoso.com:5986/wsman" in str(raised.value)
    assert "admin-secret" not in str(raised.value)


def test_winrm_transport_error_is_not_a_winrm_error():
    # Why the transport catches it on its own: pywinrm raises it for bare HTTP errors, outside its hierarchy.
    from winrm.exceptions import WinRMError

    assert not issubclass(WinRMTransportError, WinRMError)


def test_powershell_errors_arrive_as_json():
    answer = {"error": {"message": "Cannot find an object with identity: 'x'", "type": "ADIdentityNotFoundException", "id": "ActiveDirectoryCmdlet:x"}}
    protocol = FailingProtocol(output=(json.dumps(answer).encode("ascii"), b"", 1))
    with pytest.raises(DomainError, match=r"dc01.contoso.com: domain_facts failed: Cannot find an object with identity: 'x' \(ActiveDirectoryCmdlet:x\)"):
        client_with(protocol).domain_facts()
    assert protocol.cleaned


def test_errors_outside_the_script_are_read_from_clixml():
    protocol = FailingProtocol(output=(b"", CLIXML.encode("utf-8"), 1))
    with pytest.raises(DomainError) as raised:
        client_with(protocol).domain_facts()
    message = str(raised.value)
    assert "PowerShell failed during domain_facts: Import-Module : The specified module 'ActiveDirectory' was not loaded" in message
    assert "CLIXML" not in message and "_x000D_" not in message


def test_clixml_to_text_keeps_plain_text():
    assert clixml_to_text("plain failure\r\n") == "plain failure"


def test_operation_timeouts_are_retried_until_the_deadline():
    protocol = FailingProtocol(output=(b'{"result": {"valid": true}, "server": "dc01.contoso.com"}', b"", 0), timeouts=3)
    assert client_with(protocol).credentials_valid("ccg", "pw") is True
    endless = FailingProtocol(timeouts=10**9)
    with pytest.raises(DomainConnectionError, match="did not finish within the timeout"):
        client_with(endless, timeout=0.2).credentials_valid("ccg", "pw")


def test_no_proxy_from_the_environment_unless_asked(monkeypatch):
    # pywinrm's default proxy setting ("legacy_requests") would follow HTTPS_PROXY (winrm/transport.py build_session).
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    settings = ConnectionSettings(
        transport="winrm", server="dc01.contoso.com", port=5986, username="CONTOSO\\admin", password="admin-secret",
        auth="ntlm", tls="tls", validate_certs=True, ca_cert=None, timeout=60,
    )
    assert WinRMDomainClient(settings, time.monotonic() + 60)._protocol.transport.proxy is None
    asked = dataclasses.replace(settings, proxy="http://proxy.contoso.com:3128")
    assert WinRMDomainClient(asked, time.monotonic() + 60)._protocol.transport.proxy == "http://proxy.contoso.com:3128"


def test_kerberos_password_goes_to_kinit_on_stdin_never_argv(monkeypatch, tmp_path):
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 1, b"", b"kinit: Password incorrect while getting initial credentials (admin-secret)")

    monkeypatch.setattr(subprocess, "run", fake_run)
    settings = ConnectionSettings(
        transport="winrm", server="dc01.contoso.com", port=5986, username="admin@contoso.com", password="admin-secret",
        auth="kerberos", tls="tls", validate_certs=True, ca_cert=None, timeout=60, kerberos_delegation=True,
    )
    with pytest.raises(AuthenticationFailed) as raised:
        WinRMDomainClient(settings, time.monotonic() + 60)
    [(command, kwargs)] = calls
    assert command == ["kinit", "-f", "admin@CONTOSO.COM"]
    assert kwargs["input"] == b"admin-secret\n" and kwargs["timeout"] <= 30
    assert kwargs["env"]["KRB5CCNAME"].startswith("FILE:")
    assert not os.path.exists(kwargs["env"]["KRB5CCNAME"].removeprefix("FILE:")), "the private cache is removed"
    assert "admin-secret" not in str(raised.value) and "admin@CONTOSO.COM" in str(raised.value)
    assert "KRB5CCNAME" not in os.environ or "gmsa-krb5cc" not in os.environ["KRB5CCNAME"]
