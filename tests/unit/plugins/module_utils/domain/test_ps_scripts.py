# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The PowerShell of the WinRM transport: it parses, and input never becomes script text.

No PowerShell runs here; tree-sitter-powershell checks the syntax, and the transport is driven with a fake
pywinrm protocol to see exactly what would reach the Windows host.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
import tree_sitter
import tree_sitter_powershell

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import ConnectionSettings, DomainClient, DomainFacts, principal_lookup_attribute
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import (
    Ace,
    SecurityDescriptor,
    decode_security_descriptor,
    encode_security_descriptor,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._winrm_transport import POWERSHELL_ARGUMENTS, WinRMDomainClient, encode_command

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))

# Quotes, subexpressions, backticks, statement separators, LDAP filter metacharacters, a comment, non-ASCII.
HOSTILE_VALUES = [
    "a'b",
    'a"b',
    "$(Remove-ADObject -Identity x)",
    "`$env:USERNAME`n",
    "x; Remove-Item C:\\ -Recurse",
    "*)(objectClass=*",
    "x' + (Get-Date) + '",
    "# comment",
    "Zoë-アカウント",
]


def error_nodes(node):
    if node.type == "ERROR" or node.is_missing:
        yield node
    for child in node.children:
        yield from error_nodes(child)


@pytest.mark.parametrize("operation", sorted(_ps_scripts.OPERATIONS))
def test_every_script_parses_cleanly(operation):
    script = _ps_scripts.build_script(operation)
    tree = PARSER.parse(script.encode("utf-8"))
    problems = [(node.start_point, script.encode("utf-8")[node.start_byte:node.end_byte][:60]) for node in error_nodes(tree.root_node)]
    assert not tree.root_node.has_error, problems


@pytest.mark.parametrize("operation", sorted(_ps_scripts.OPERATIONS))
def test_scripts_are_ascii(operation):
    # -EncodedCommand carries any text, but the scripts stay plain so that a review sees every character.
    assert _ps_scripts.build_script(operation).isascii()


class RecordingProtocol:
    """Stands in for winrm.protocol.Protocol: records commands and stdin, answers with canned JSON."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer
        self.commands: list[tuple[str, list[str]]] = []
        self.stdin: list[bytes] = []
        self.console_modes: list[bool] = []
        self.shells_opened = 0

    def open_shell(self):
        self.shells_opened += 1
        return "shell-1"

    def run_command(self, shell_id, command, arguments, console_mode_stdin=True, skip_cmd_shell=False):
        self.commands.append((command, list(arguments)))
        self.console_modes.append(console_mode_stdin)
        return "command-1"

    def send_command_input(self, shell_id, command_id, stdin_input, end=False):
        assert end
        self.stdin.append(stdin_input.encode("437") if isinstance(stdin_input, str) else stdin_input)

    def get_command_output_raw(self, shell_id, command_id):
        return json.dumps(dict(self.answer, server="dc01.contoso.com")).encode("ascii"), b"", 0, True

    def cleanup_command(self, shell_id, command_id):
        pass

    def close_shell(self, shell_id):
        pass


def winrm_client(answer: dict) -> tuple[WinRMDomainClient, RecordingProtocol]:
    settings = ConnectionSettings(
        transport="winrm", server="dc01.contoso.com", port=5985, username="CONTOSO\\admin", password="secret",
        auth="ntlm", tls="none", validate_certs=True, ca_cert=None, timeout=60,
    )
    client = WinRMDomainClient(settings, time.monotonic() + 60)
    protocol = RecordingProtocol(answer)
    client._protocol = protocol
    return client, protocol


def sent_request(protocol: RecordingProtocol, index: int = 0) -> dict:
    """The JSON document the command read from stdin; the command line itself is always the bootstrap."""
    command, arguments = protocol.commands[index]
    assert command == "powershell.exe"
    assert arguments[:-1] == list(POWERSHELL_ARGUMENTS)
    assert base64.b64decode(arguments[-1]).decode("utf-16-le") == _ps_scripts.BOOTSTRAP
    assert protocol.console_modes[index] is False, "stdin must go through a pipe"
    stdin = protocol.stdin[index]
    assert stdin.isascii()
    return json.loads(stdin)


def sent_script(protocol: RecordingProtocol, index: int = 0) -> str:
    return sent_request(protocol, index)["script"]


def sent_input(protocol: RecordingProtocol, index: int = 0) -> dict:
    return sent_request(protocol, index)["input"]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_names_stay_data(value):
    client, protocol = winrm_client({"result": {"accounts": []}})
    assert client.find_gmsas([value]) == {}
    # The command line is the constant script, whatever the input ...
    assert sent_script(protocol) == _ps_scripts.build_script("find_gmsas")
    # ... and the value travels as ASCII JSON on stdin, decoded back intact by ConvertFrom-Json.
    assert sent_input(protocol) == {"names": [value]}


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_principals_stay_data(value):
    client, protocol = winrm_client({"result": {"principals": []}})
    assert client.resolve_principals([value]) == {}
    assert sent_script(protocol) == _ps_scripts.build_script("resolve_principals")
    assert sent_input(protocol) == {"lookups": [{"attribute": principal_lookup_attribute(value), "value": value}]}


def test_hostile_password_stays_data():
    client, protocol = winrm_client({"result": {"valid": False}})
    password = "p'w\"$(x)`;*)("
    assert client.credentials_valid("ccg", password) is False
    assert password not in sent_script(protocol)
    assert sent_input(protocol) == {"username": "ccg", "password": password}


def test_one_shell_serves_every_operation():
    client, protocol = winrm_client({"result": {
        "distinguished_name": "DC=contoso,DC=com", "dns_name": "contoso.com", "dns_tree_name": "contoso.com",
        "netbios_name": "CONTOSO", "sid": "S-1-5-21-1-2-3", "guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
    }})
    facts = client.domain_facts()
    assert facts == DomainFacts("DC=contoso,DC=com", "contoso.com", "contoso.com", "CONTOSO", "S-1-5-21-1-2-3", "244818ae-87ca-4fcd-92ec-e79e5252348a")
    client.domain_facts()
    assert protocol.shells_opened == 1
    assert len(protocol.commands) == 2


def test_encode_command_is_utf16le_base64():
    assert base64.b64decode(encode_command("Get-Date")) == "Get-Date".encode("utf-16-le")


def test_update_writes_the_whole_descriptor_keeping_what_others_put_there():
    # Allow G, then Deny U (someone else's), in AD; the task adds H.
    existing = encode_security_descriptor(SecurityDescriptor(0x8004, "S-1-5-32-544", None, (
        Ace(0x00, 0, 0xF01FF, "S-1-5-21-1-2-3-1105"), Ace(0x01, 0, 0xF01FF, "S-1-5-21-1-2-3-1106"),
    )))
    account_json = {
        "name": "web", "sam_account_name": "web$", "distinguished_name": "CN=web,CN=Managed Service Accounts,DC=contoso,DC=com",
        "sid": "S-1-5-21-1-2-3-1110", "object_guid": "5f1e3b47-1c2c-4d8e-9b47-2d6f3a2b9f10", "password_interval_days": 30,
        "dns_host_name": "web.contoso.com", "spns": ["host/web"], "membership": base64.b64encode(existing).decode(),
        "encryption_types": 24, "description": None, "enabled": True,
    }
    client, protocol = winrm_client({"result": {"accounts": [account_json]}})
    account = client.find_gmsas(["web"])["web"]
    protocol.answer = {"result": account_json}
    client.update_gmsa(account, dataclasses.replace(account.settings, password_readers=("S-1-5-21-1-2-3-1105", "S-1-5-21-1-2-3-1107"), description="web"))
    sent = sent_input(protocol, 1)
    assert decode_security_descriptor(base64.b64decode(sent["membership"])).to_sddl() == (
        "O:BAD:(A;;0xf01ff;;;S-1-5-21-1-2-3-1105)(D;;0xf01ff;;;S-1-5-21-1-2-3-1106)(A;;0xf01ff;;;S-1-5-21-1-2-3-1107)"
    )
    assert sent["replace"] == {"description": "web"}
    assert sent["enabled"] is None


def test_every_operation_of_the_contract_has_a_script():
    # The batches have a script each too; the base class runs them item by item for a transport without.
    assert set(_ps_scripts.OPERATIONS) == DomainClient.__abstractmethods__ - {"close"} | set(_ps_scripts.BATCHES)


def test_every_script_of_a_run_is_pinned_to_the_dc_the_first_one_found():
    client, protocol = winrm_client({"result": {"valid": True}})
    client.credentials_valid("ccg", "pw")
    client.credentials_valid("ccg", "pw")
    # The first request lets the script discover a writable DC; every later one names the DC it answered with.
    assert [sent_request(protocol, index)["server"] for index in range(2)] == ["", "dc01.contoso.com"]


def test_the_wrapper_pins_the_server_and_skips_the_ad_drive_before_any_cmdlet_runs():
    head = _ps_scripts.WRAPPER_HEAD
    # ADPS_LoadDefaultDrive is read by Import-Module ActiveDirectory; the default -Server applies to every *-AD* cmdlet.
    assert head.index("$env:ADPS_LoadDefaultDrive = 0") < head.index("Import-Module ActiveDirectory")
    assert head.index("Get-ADDomainController -Discover -Writable") < head.index("$PSDefaultParameterValues['*-AD*:Server'] = $server")
    assert head.index("$PSDefaultParameterValues['*-AD*:Server']") < head.index("$null = . {")


def test_the_retrieval_check_prints_no_blob():
    # Only the sealed form leaves the script: nothing readable for a transcript or the output stream.
    script = _ps_scripts.build_script("read_managed_password")
    assert "ToBase64String($blob)" not in script and " blob = " not in script
    assert "sealed_blob = $sealed" in script and "[Array]::Clear($blob, 0, $blob.Length)" in script
