# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A WS-Management endpoint on loopback that answers the WinRM transport's PowerShell with the lab DC.

What is real: HTTP(S) on a socket; the NTLM, Kerberos and CredSSP handshakes (pyspnego acceptors; channel
binding on HTTPS; Kerberos against the lab DC's KDC with a keytab exported from it for HTTP/<name>, mutual
authentication; CredSSP delegating the password); WinRM message encryption on HTTP for all three
(application/HTTP-SPNEGO-session-encrypted, application/HTTP-CredSSP-session-encrypted, chunked above
16 KiB); the SOAP envelopes of the five shell actions plus Send, base64 streams and exit codes, as pywinrm
exchanges them with Windows.

What is not: no PowerShell runs. The endpoint recognizes the bootstrap command line and each script the
transport sends on stdin (it must be, byte for byte, one of ``_ps_scripts``), and carries out the same
operation on the lab DC over LDAP, step by step as the script's cmdlets would, answering with the JSON the
script would print. So the suite proves the transport, the wire protocol, the input/output contract and the
error mapping; whether the PowerShell itself does the right thing on Windows is checked only statically
(tests/unit/plugins/module_utils/domain/test_ps_scripts.py).

Where Windows refuses something, so does the endpoint (the double is wrong where it differs):
- stdin sent to a command started with console-mode stdin (WINRS_CONSOLEMODE_STDIN=TRUE, pywinrm's default):
  PowerShell's ``[Console]::In.ReadToEnd()`` then never sees an end of file; here the command fails at once;
- a command line over cmd.exe's 8,191 characters (32,767, CreateProcess's limit, with WINRS_SKIP_CMD_SHELL);
- Basic authentication: the WinRM service accepts it for local accounts only, and a DC has none;
- ``New-ADUser -AccountPassword`` with a password the domain refuses leaves the user behind, disabled.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import secrets
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import uuid
from xml.etree import ElementTree

import pytest
import spnego
from cryptography.hazmat.primitives import hashes, padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
import spnego.channel_bindings
import spnego.exceptions

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts

from ansible_collections.wincontainers.gmsa.plugins.module_utils import _tls

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DOMAIN_CONNECTION_ARGUMENT_SPEC,
    AuthenticationFailed,
    DomainError,
    GmsaSettings,
    KdsRootKey,
    open_domain_client,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap_transport import LdapDomainClient
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import LDAPError, escape_dn_value, escape_filter_value

# userAccountControl bits (MS-ADTS 2.2.16)
_ACCOUNTDISABLE = 0x2
_PASSWD_NOTREQD = 0x20
_NORMAL_ACCOUNT = 0x200
_DONT_EXPIRE_PASSWORD = 0x10000

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_BOUNDARY = b"--Encrypted Boundary"
# MS-WSMV 2.2.9.1: the protocol string of each kind of message encryption; CredSSP splits messages into 16 KiB chunks.
_ENCRYPTED_PROTOCOLS = {
    "ntlm": "application/HTTP-SPNEGO-session-encrypted",
    "kerberos": "application/HTTP-SPNEGO-session-encrypted",
    "credssp": "application/HTTP-CredSSP-session-encrypted",
}
_CREDSSP_CHUNK = 16384
# How long one script (one powershell.exe, with its own connection) may take on the lab DC.
SCRIPT_TIMEOUT = 120
# What the AD cmdlets throw for a refusal of the DC.
_AD_EXCEPTION = "Microsoft.ActiveDirectory.Management.ADException"
_NTLMSSP_SIGNATURE = b"NTLMSSP\0"
# https://learn.microsoft.com/en-us/troubleshoot/windows-client/shell-experience/command-line-string-limitation
CMD_EXE_LIMIT = 8191
CREATE_PROCESS_LIMIT = 32767


class WSManEndpoint:
    """``https://127.0.0.1:<port>/wsman`` (or http); ``execute`` runs each command.

    NTLM and CredSSP accept ``username`` (a user of the NTLM user file); Kerberos accepts ``kerberos_principal``
    with a ticket for a principal of ``keytab`` (the acceptor reads it from KRB5_KTNAME).
    """

    def __init__(
        self, username: str, password: str, execute, tls_files: tuple[str, str] | None = None,
        kerberos_principal: str | None = None, keytab: str | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.execute = execute
        self.tls_files = tls_files
        self.kerberos_principal = kerberos_principal
        self.requests = 0
        self.encrypted_messages = 0
        self.chunked_messages = 0
        self.chunked_answers = 0
        self.timed_out_receives = 0
        # What each authenticated connection used: (protocol, delegated credential or None), for the tests.
        self.authentications: list[tuple[str, object]] = []
        if keytab:
            os.environ["KRB5_KTNAME"] = f"FILE:{keytab}"
        self._user_file = tempfile.NamedTemporaryFile("w", suffix=".ntlm", delete=False)  # noqa: SIM115 - lives as long as the endpoint
        # pyspnego's NTLM acceptor reads its users from this file only: DOMAIN:user:password.
        self._user_file.write(f"LAB:{username}:{password}\n")
        self._user_file.close()
        os.environ["NTLM_USER_FILE"] = self._user_file.name
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.certificate_hash = None
        if tls_files:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls_files)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            with open(tls_files[0], "rb") as cert_file:
                der = ssl.PEM_cert_to_DER_cert(cert_file.read().decode("ascii"))
            self.certificate_hash = hashlib.sha256(der).digest()
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_files else "http"

    def __enter__(self) -> WSManEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        os.unlink(self._user_file.name)


def _handler_for(endpoint: WSManEndpoint):
    class Handler(_WSManHandler):
        pass

    Handler.endpoint = endpoint
    return Handler


class _WSManHandler(http.server.BaseHTTPRequestHandler):
    """One instance per TCP connection: NTLM authenticates the connection, not each request."""

    protocol_version = "HTTP/1.1"
    endpoint: WSManEndpoint

    def setup(self) -> None:
        super().setup()
        # Without it every response waits for the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.context = None
        self.protocol = None
        self.authenticated = False
        self.answer_token = None
        self.shells: dict[str, dict] = {}

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature of the base class
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.endpoint.requests += 1
        if not self._authenticate():
            return
        if not body:
            self._reply(200, b"", "application/soap+xml;charset=UTF-8")  # pywinrm's probe that sets up encryption
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))
        if encrypted and f'protocol="{_ENCRYPTED_PROTOCOLS[self.protocol]}"' not in content_type:
            self._reply(400, b"", "text/plain")
            return
        if not encrypted and not self.endpoint.tls_files:
            # The WinRM service's default AllowUnencrypted=false: over HTTP only encrypted messages are accepted.
            self._reply(400, b"", "text/plain")
            return
        self.endpoint.encrypted_messages += encrypted
        self.endpoint.chunked_messages += content_type.startswith("multipart/x-multi-encrypted")
        request = self._decrypt(body) if encrypted else body
        status, response = self._dispatch(ElementTree.fromstring(request))
        if encrypted:
            chunked = self.protocol == "credssp" and len(response) > _CREDSSP_CHUNK
            kind = "multipart/x-multi-encrypted" if chunked else "multipart/encrypted"
            self.endpoint.chunked_answers += chunked
            self._reply(status, self._encrypt(response), f'{kind};protocol="{_ENCRYPTED_PROTOCOLS[self.protocol]}";boundary="Encrypted Boundary"')
        else:
            self._reply(status, response, "application/soap+xml;charset=UTF-8")

    def _reply(self, status: int, body: bytes, content_type: str, headers: tuple = ()) -> None:
        self.send_response(status)
        if self.answer_token is not None:
            # Kerberos mutual authentication: the AP-REP comes with the first successful response.
            headers = (*headers, ("WWW-Authenticate", f"Negotiate {base64.b64encode(self.answer_token).decode()}"))
            self.answer_token = None
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _unauthorized(self, *challenges: str) -> bool:
        self._reply(401, b"", "text/plain", tuple(("WWW-Authenticate", challenge) for challenge in challenges))
        return False

    def _authenticate(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _space, token = header.partition(" ")
        if scheme == "Basic":
            # The WinRM service checks Basic credentials against local accounts only, and a DC has none
            # (https://learn.microsoft.com/en-us/windows/win32/winrm/authentication-for-remote-connections).
            return self._unauthorized("Negotiate")
        if self.authenticated:
            return True
        if scheme not in ("NTLM", "Negotiate", "Kerberos", "CredSSP"):
            return self._unauthorized("Negotiate", "Kerberos", "CredSSP")
        token = base64.b64decode(token)
        if self.context is None:
            self.protocol = "credssp" if scheme == "CredSSP" else "ntlm" if token.startswith(_NTLMSSP_SIGNATURE) else "kerberos"
            bindings = None
            if self.endpoint.certificate_hash and self.protocol != "credssp":  # CredSSP binds to TLS with its public key instead
                bindings = spnego.channel_bindings.GssChannelBindings(application_data=b"tls-server-end-point:" + self.endpoint.certificate_hash)
            self.context = spnego.server(protocol=self.protocol, service="HTTP", channel_bindings=bindings)
        try:
            answer = self.context.step(token)
        except spnego.exceptions.SpnegoError:
            self.context = None
            return self._unauthorized()
        if not self.context.complete:
            return self._unauthorized(f"{scheme} {base64.b64encode(answer).decode()}")
        if self.protocol == "kerberos" and self.context.client_principal != self.endpoint.kerberos_principal:
            self.context = None
            return self._unauthorized()
        if self.protocol == "kerberos":
            self.answer_token = answer
        self.endpoint.authentications.append((self.protocol, self._delegated()))
        self.authenticated = True
        return True

    def _delegated(self) -> object:
        """What the client delegated for the double hop: CredSSP's credentials, or whether Kerberos forwarded a TGT."""
        if self.protocol == "credssp":
            return self.context.get_extra_info("client_credential")
        return bool(self.context.context_attr & spnego.ContextReq.delegate) if self.protocol == "kerberos" else None

    def _decrypt(self, body: bytes) -> bytes:
        """Every part of a multipart/encrypted (or x-multi-encrypted) body: the length, then the sealed part."""
        parts = [part for part in body.removesuffix(_BOUNDARY + b"--\r\n").split(_BOUNDARY + b"\r\n") if part]
        message = b""
        for description, payload in zip(parts[::2], parts[1::2]):
            length = int(description.split(b"Length=")[1].strip())
            payload = payload.removeprefix(b"\tContent-Type: application/octet-stream\r\n")
            header_size = struct.unpack("<i", payload[:4])[0]
            part = self.context.unwrap_winrm(payload[4:4 + header_size], payload[4 + header_size:])
            assert len(part) == length
            message += part
        return message

    def _encrypt(self, message: bytes) -> bytes:
        chunk_size = _CREDSSP_CHUNK if self.protocol == "credssp" else len(message) or 1
        body = b""
        for start in range(0, len(message), chunk_size):
            chunk = message[start:start + chunk_size]
            wrapped = self.context.wrap_winrm(chunk)
            body += (
                _BOUNDARY + b"\r\n\tContent-Type: " + _ENCRYPTED_PROTOCOLS[self.protocol].encode() + b"\r\n"
                b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(chunk)).encode() + b"\r\n"
                + _BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n"
                + struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
            )
        return body + _BOUNDARY + b"--\r\n"

    # --- the shell actions ---------------------------------------------------------------------------------------

    def _dispatch(self, envelope) -> tuple[int, bytes]:
        action = envelope.findtext("s:Header/a:Action", namespaces=NS)
        message_id = envelope.findtext("s:Header/a:MessageID", namespaces=NS)
        shell_id = envelope.findtext("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", namespaces=NS)
        body = envelope.find("s:Body", NS)
        name = action.rsplit("/", 1)[-1]
        if name == "Create":
            shell_id = str(uuid.uuid4()).upper()
            self.shells[shell_id] = {}
            content = (
                f'<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"><a:ReferenceParameters><w:SelectorSet>'
                f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>'
            )
        elif name == "Command":
            command_id = str(uuid.uuid4()).upper()
            line = body.find("rsp:CommandLine", NS)
            options = {option.get("Name"): option.text for option in envelope.findall("s:Header/w:OptionSet/w:Option", NS)}
            self.shells[shell_id][command_id] = {
                "command": line.findtext("rsp:Command", namespaces=NS),
                "arguments": (line.findtext("rsp:Arguments", default="", namespaces=NS)).split(),
                "console_mode_stdin": options.get("WINRS_CONSOLEMODE_STDIN", "TRUE").upper() == "TRUE",
                "skip_cmd_shell": options.get("WINRS_SKIP_CMD_SHELL", "FALSE").upper() == "TRUE",
                "stdin": b"",
            }
            content = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        elif name == "Send":
            stream = body.find("rsp:Send/rsp:Stream", NS)
            command = self.shells[shell_id][stream.get("CommandId")]
            command["stdin"] += base64.b64decode(stream.text or "")
            if stream.get("End") == "true":
                # As on Windows, the command runs while Send returns; Receive waits for it.
                command["done"] = threading.Event()
                threading.Thread(target=_run_in_background, args=(self.endpoint.execute, command), daemon=True).start()
            content = "<rsp:SendResponse/>"
        elif name == "Receive":
            command_id = body.find("rsp:Receive/rsp:DesiredStream", NS).get("CommandId")
            command = self.shells[shell_id][command_id]
            # Windows answers a Receive that had no output within OperationTimeout with this fault
            # (ERROR_WSMAN_OPERATION_TIMEDOUT, which pywinrm's Protocol.send_message turns into
            # WinRMOperationTimeoutError), and the client asks again.
            if not command["done"].wait(_seconds(envelope.findtext("s:Header/w:OperationTimeout", default="PT60S", namespaces=NS))):
                self.endpoint.timed_out_receives += 1
                reason = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
                return 500, _fault(message_id, reason, 2150858793)
            stdout, stderr, exit_code = command["output"]
            content = (
                f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="{command_id}">{base64.b64encode(stdout).decode()}</rsp:Stream>'
                f'<rsp:Stream Name="stderr" CommandId="{command_id}">{base64.b64encode(stderr).decode()}</rsp:Stream>'
                f'<rsp:CommandState CommandId="{command_id}" State="{_SHELL}/CommandState/Done"><rsp:ExitCode>{exit_code}</rsp:ExitCode>'
                "</rsp:CommandState></rsp:ReceiveResponse>"
            )
        elif name == "Signal":
            self.shells[shell_id].pop(body.find("rsp:Signal", NS).get("CommandId"), None)
            content = "<rsp:SignalResponse/>"
        elif name == "Delete":
            self.shells.pop(shell_id, None)
            content = ""
        else:
            return 500, _fault(message_id, f"action {action} is not implemented by this endpoint")
        return 200, _envelope(f"{action}Response", message_id, content)


def _run_in_background(execute, command: dict) -> None:
    try:
        command["output"] = _run_as_windows_would(execute, command)
    # A bug of the double ends its command with an error, instead of leaving the client to wait out its deadline.
    except Exception as error:  # pylint: disable=broad-exception-caught
        command["output"] = (b"", _clixml_error(f"the WS-Management double failed: {error!r}"), 1)
    finally:
        command["done"].set()


def _seconds(duration: str) -> float:
    """An xs:duration of seconds as WS-Management sends OperationTimeout (PT20.000S)."""
    return float(duration.removeprefix("PT").removesuffix("S"))


def _run_as_windows_would(execute, command: dict) -> tuple[bytes, bytes, int]:
    """Refuse what Windows would not run, as it would; else ``execute`` the command."""
    line = " ".join([command["command"], *command["arguments"]])
    if len(line) > (CREATE_PROCESS_LIMIT if command["skip_cmd_shell"] else CMD_EXE_LIMIT):
        return b"", b"The command line is too long.\r\n", 1
    if command["console_mode_stdin"]:
        # Windows would let the command wait for an end of file that never comes, until the operation times out.
        return b"", _clixml_error("stdin was sent to a console-mode command (WINRS_CONSOLEMODE_STDIN=TRUE): ReadToEnd would never return"), 1
    return execute(command["command"], command["arguments"], command["stdin"])


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def _fault(relates_to: str, reason: str, code: int = 2150858770) -> bytes:
    body = (
        f'<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}"/></s:Detail></s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def _clixml_error(text: str) -> bytes:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "_x000A_")
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">{escaped}</S></Objs>'.encode()


class PowerShellOnLdap:
    """Carries out each script of ``_ps_scripts`` on the lab DC, answering as the script would.

    On Windows each Command of a cmd shell (pywinrm's ``Protocol.run_command`` sends one per call, with the
    resource URI ``.../windows/shell/cmd``) starts a process, here powershell.exe, and the ActiveDirectory module's
    connection to the DC lives in that process: two commands, of one shell or of two clients, share no connection
    and run at the same time. So each command here opens an LDAP connection of its own (``connect``), held in ``ldap`` for the
    thread that carries the command out (the endpoint runs each command in a thread of its own), and closes it
    when the command ends. Sharing one connection would interleave two commands' LDAP messages on one socket.
    """

    def __init__(self, connect) -> None:
        self._connect = connect
        self._process = threading.local()
        self.operations: list[str] = []
        self.servers: list[str] = []
        self._dc_host_name = None

    @property
    def ldap(self) -> LdapDomainClient:
        """The connection of the command this thread carries out."""
        return self._process.ldap

    @contextlib.contextmanager
    def process(self):
        """A connection of its own for the calling thread, as a powershell.exe process has, for as long as it runs."""
        with self._connect() as client:
            self._process.ldap = client
            try:
                yield self
            finally:
                del self._process.ldap

    @staticmethod
    def _error(message: str, error_type: str, error_id: str) -> tuple[bytes, bytes, int]:
        """What the bootstrap or the wrapper's catch block prints."""
        return json.dumps({"error": {"message": message, "type": error_type, "id": error_id}}).encode("ascii"), b"", 1

    def __call__(self, command: str, arguments: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
        with self.process():
            return self._run(command, arguments, stdin)

    def _run(self, command: str, arguments: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
        if command != "powershell.exe" or "-EncodedCommand" not in arguments:
            return b"", _clixml_error(f"'{command}' is not recognized as a command this endpoint runs"), 1
        script = base64.b64decode(arguments[arguments.index("-EncodedCommand") + 1]).decode("utf-16-le")
        if script != _ps_scripts.BOOTSTRAP:
            return b"", _clixml_error("The command is not _ps_scripts.BOOTSTRAP: the endpoint cannot tell what it would do"), 1
        if not stdin.strip():
            return self._error("no request arrived on standard input", "EmptyInput", "EmptyInput")
        # PowerShell reads the pipe as code page 437; the transport's JSON is ASCII, anything else is a bug.
        request = json.loads(stdin.decode("ascii"))
        if not request.get("script"):
            return self._error("the request on standard input has no script", "EmptyInput", "EmptyInput")
        # Looked up at each call, so that a test may swap a script in _ps_scripts.OPERATIONS.
        scripts = {_ps_scripts.build_script(operation): operation for operation in _ps_scripts.OPERATIONS}
        operation = scripts.get(request["script"])
        if operation is None:
            return b"", _clixml_error("The script is not one of _ps_scripts: the endpoint cannot tell what it would do"), 1
        self.operations.append(operation)
        data = request.get("input")
        if data is None:
            message = "the request carries no input document"
            return self._error(message, "System.Management.Automation.RuntimeException", message)
        for key in _ps_scripts.input_keys(operation):
            if key not in data:
                message = f"the input document lacks the key '{key}'"
                return self._error(message, "System.Management.Automation.RuntimeException", message)
        server = request.get("server") or self._discover_dc()
        self.servers.append(server)
        try:
            result = getattr(self, operation)(data)
        except (DomainError, LDAPError) as error:
            return self._error(str(error), _AD_EXCEPTION, f"ActiveDirectoryServer:{operation}")
        return json.dumps({"result": result, "server": server}).encode("ascii"), b"", 0

    def _discover_dc(self) -> str:
        """Get-ADDomainController -Discover -Writable: the lab's one DC."""
        if self._dc_host_name is None:
            self._dc_host_name = self.ldap._connection.rootdse(("dnsHostName",))["dnsHostName"][0]
        return self._dc_host_name

    # --- one method per script, named as the operation --------------------------------------------------------

    def domain_facts(self, data: dict) -> dict:
        return self.ldap.domain_facts().__dict__

    def container_exists(self, data: dict) -> dict:
        return {"exists": self.ldap.container_exists(data["dn"])}

    @staticmethod
    def _gmsa(account) -> dict:
        settings = account.settings
        return {
            "name": account.name,
            "sam_account_name": account.sam_account_name,
            "distinguished_name": account.distinguished_name,
            "sid": account.sid,
            "object_guid": account.object_guid,
            "password_interval_days": account.password_interval_days,
            "dns_host_name": settings.dns_host_name,
            "spns": list(settings.spns),
            "membership": base64.b64encode(account.membership).decode() if account.membership else None,
            "encryption_types": settings.encryption_types,
            "description": settings.description,
            "enabled": settings.enabled,
        }

    def _gmsa_by_guid(self, object_guid: str):
        guid_filter = f"(objectGUID={escape_filter_value(uuid.UUID(object_guid).bytes_le)})"
        base = self.ldap.domain_facts().distinguished_name
        entries = self.ldap._search("finding the gMSA", base, guid_filter, ("sAMAccountName",))
        account = None
        if entries:
            name = entries[0].values("sAMAccountName")[0].decode().removesuffix("$")
            account = self.ldap.find_gmsas([name]).get(name.lower())
        if account is None:
            # What -Identity of an object that is gone (deleted by another run meanwhile, also between these two reads)
            # throws: ADIdentityNotFoundException.
            raise DomainError(f"Cannot find an object with identity: '{object_guid}' under: '{base}'.")
        return account

    def find_gmsas(self, data: dict) -> dict:
        return {"accounts": [self._gmsa(account) for account in self.ldap.find_gmsas(data["names"]).values()]}

    def create_gmsa(self, data: dict) -> dict:
        settings = GmsaSettings(
            dns_host_name=data["dns_host_name"],
            spns=tuple(data["spns"]),
            password_readers=tuple(data["password_readers"]),
            encryption_types=data["encryption_types"],
            description=data["description"],
            enabled=data["enabled"],
        )
        return self._gmsa(self.ldap.create_gmsa(data["name"], data["container"], data["password_interval_days"], settings))

    def update_gmsa(self, data: dict) -> dict:
        """Set-ADServiceAccount -Replace/-Clear/-Enabled: one modification, what the transport asked for and nothing else."""
        account = self._gmsa_by_guid(data["object_guid"])
        replace = dict(data["replace"])
        if data["membership"] is not None:
            replace["msDS-GroupMSAMembership"] = base64.b64decode(data["membership"])
        changes = [("replace", name, value) for name, value in replace.items()]
        changes += [("delete", name, []) for name in data["clear"]]
        if data["enabled"] is not None:
            changes.append(("replace", "userAccountControl", self.ldap._toggled_disable_bit(account.distinguished_name, data["enabled"])))
        if changes:
            self.ldap._call(f"Set-ADServiceAccount {account.name}", self.ldap._connection.modify, account.distinguished_name, changes)
        return self._gmsa(self._gmsa_by_guid(data["object_guid"]))

    def delete_gmsa(self, data: dict) -> None:
        self.ldap.delete_gmsa(self._gmsa_by_guid(data["object_guid"]))

    def _for_each_item(self, operation: str, data: dict) -> dict:
        """What _ps_scripts.for_each_item does: the operation for each item in turn, stopping at the first failure."""
        results = []
        for item in data["items"]:
            missing = [key for key in _ps_scripts.input_keys(operation) if key not in item]
            try:
                if missing:
                    raise DomainError(f"an item of the input document lacks the key '{missing[0]}'")
                results.append(getattr(self, operation)(item))
            except (DomainError, LDAPError) as error:
                failure = {"index": len(results), "message": str(error), "type": _AD_EXCEPTION, "id": f"ActiveDirectoryServer:{operation}"}
                return {"results": results, "failure": failure}
        return {"results": results, "failure": None}

    def create_gmsas(self, data: dict) -> dict:
        return self._for_each_item("create_gmsa", data)

    def update_gmsas(self, data: dict) -> dict:
        return self._for_each_item("update_gmsa", data)

    def delete_gmsas(self, data: dict) -> dict:
        return self._for_each_item("delete_gmsa", data)

    def resolve_principals(self, data: dict) -> dict:
        identities = [lookup["value"] for lookup in data["lookups"]]
        found = self.ldap.resolve_principals(identities)
        return {"principals": [dict(principal.__dict__, identity=identity) for identity, principal in found.items()]}

    @staticmethod
    def _kds_root_key(key: KdsRootKey) -> dict:
        return {"key_id": key.key_id, "created": int(key.created.timestamp()), "effective_time": int(key.effective_time.timestamp())}

    def kds_root_keys(self, data: dict) -> dict:
        return {"keys": [self._kds_root_key(key) for key in self.ldap.kds_root_keys()]}

    def create_kds_root_key(self, data: dict) -> dict:
        effective_time = datetime.datetime.fromtimestamp(data["effective_time"], tz=datetime.timezone.utc)
        return self._kds_root_key(self.ldap.create_kds_root_key(effective_time))

    @staticmethod
    def _user(user) -> dict:
        return dict(user.__dict__, groups=list(user.groups))

    def find_user(self, data: dict) -> dict | None:
        user = self.ldap.find_user(data["name"])
        return self._user(user) if user else None

    # New-ADUser, Set-ADAccountPassword, Set-ADUser and Remove-ADUser as separate writes, as the cmdlets make them.

    def _new_ad_user(self, data: dict, password: str | None) -> str:
        """New-ADUser: adds the user disabled, then sets -AccountPassword and enables it in later writes.

        When the domain refuses the password the user stays behind, disabled: what Windows does.
        """
        dn = f"CN={escape_dn_value(data['name'])},{data['container']}"
        attributes = {
            "objectClass": "user",
            "sAMAccountName": data["name"],
            "userPrincipalName": f"{data['name']}@{self.ldap.domain_facts().dns_name}",
            # What AD gives an account added without a password: disabled, PASSWD_NOTREQD.
            "userAccountControl": _NORMAL_ACCOUNT | _ACCOUNTDISABLE | _PASSWD_NOTREQD | (_DONT_EXPIRE_PASSWORD if data["password_never_expires"] else 0),
        }
        if data["description"]:
            attributes["description"] = data["description"]
        self.ldap._call(f"New-ADUser {data['name']}", self.ldap._connection.add, dn, attributes)
        if password is not None:
            self._set_ad_account_password(dn, password)
        return dn

    def _set_ad_account_password(self, dn: str, password: str) -> None:
        self.ldap._call("Set-ADAccountPassword", self.ldap._connection.modify, dn, [("replace", "unicodePwd", f'"{password}"'.encode("utf-16-le"))])

    def _set_ad_user_enabled(self, dn: str, enabled: bool) -> None:
        """Set-ADUser -Enabled -PasswordNotRequired $false."""
        control = int(self.ldap._read(dn, ("userAccountControl",)).values("userAccountControl")[0])
        control &= ~(_ACCOUNTDISABLE | _PASSWD_NOTREQD)
        control |= 0 if enabled else _ACCOUNTDISABLE
        self.ldap._call("Set-ADUser", self.ldap._connection.modify, dn, [("replace", "userAccountControl", control)])

    def create_user(self, data: dict) -> dict:
        dn = self._new_ad_user(data, password=None)
        try:
            self._set_ad_account_password(dn, data["password"])
            self._set_ad_user_enabled(dn, data["enabled"])
        except DomainError:
            self.ldap._call("Remove-ADUser", self.ldap._connection.delete, dn)
            raise
        return self._user(self.ldap._read_user(dn))

    def _user_by_sid(self, sid: str):
        principal = self.ldap.resolve_principals([sid])[sid]
        return self.ldap.find_user(principal.sam_account_name)

    def update_user(self, data: dict) -> dict:
        user = self.ldap.update_user(
            self._user_by_sid(data["sid"]),
            description=data["description"],
            enabled=data["enabled"],
            password_never_expires=data["password_never_expires"],
            password=data["password"],
        )
        return self._user(user)

    def delete_user(self, data: dict) -> None:
        self.ldap.delete_user(self._user_by_sid(data["sid"]))

    def create_group(self, data: dict) -> dict:
        return self.ldap.create_group(data["name"], data["container"]).__dict__

    def set_group_members(self, data: dict) -> None:
        self.ldap.set_group_members(data["group"], data["add"], data["remove"])

    def credentials_valid(self, data: dict) -> dict:
        return {"valid": self.ldap.credentials_valid(data["username"], data["password"])}

    def read_managed_password(self, data: dict) -> dict:
        try:
            blob = self.ldap.read_managed_password(self._gmsa_by_guid(data["object_guid"]), data["username"], data["password"])
        except AuthenticationFailed:
            return {"authenticated": False, "sealed_blob": None}
        return {"authenticated": True, "sealed_blob": _seal(blob, data["recipient_key"]) if blob else None}


def _seal(blob: bytes, recipient_key_xml: str) -> dict:
    """What the script does with RSACryptoServiceProvider (OAEP, SHA-1) and AesCryptoServiceProvider (AES-256-CBC, PKCS7)."""
    key_value = ElementTree.fromstring(recipient_key_xml)
    modulus, exponent = (int.from_bytes(base64.b64decode(key_value.findtext(name)), "big") for name in ("Modulus", "Exponent"))
    public_key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    key, iv = secrets.token_bytes(32), secrets.token_bytes(16)
    padder = symmetric_padding.PKCS7(algorithms.AES.block_size).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(blob) + padder.finalize()) + encryptor.finalize()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    sealed = {"key": public_key.encrypt(key, oaep), "iv": iv, "ciphertext": ciphertext}
    return {name: base64.b64encode(value).decode() for name, value in sealed.items()}


# --- pytest fixtures (a plugin of the domain integration tests) ---------------------------------------------------

WINRM_USER = "winrm-admin"


def _params(**values) -> dict:
    params = {name: spec.get("default") for name, spec in DOMAIN_CONNECTION_ARGUMENT_SPEC.items()}
    params.update(values)
    return params


@pytest.fixture(scope="session")
def ldap_params(samba_dc) -> dict:
    return _params(
        domain_transport="ldap",
        domain_server=samba_dc["host"],
        domain_username=f"{samba_dc['netbios_name']}\\{samba_dc['admin_user']}",
        domain_password=samba_dc["admin_password"],
        domain_krb5_config=samba_dc["krb5_config"],
    )


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[str, str, str]:
    """A CA and a server certificate for 127.0.0.1: (certificate, key, CA certificate) paths."""
    directory = tmp_path_factory.mktemp("wsman-tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = _tls.new_ca("wsman test CA", now, datetime.timedelta(days=1))
    server = _tls.new_server_cert(ca, ["127.0.0.1"], now, datetime.timedelta(days=1))
    paths = [str(directory / name) for name in ("cert.pem", "key.pem", "ca.pem")]
    for path, data in zip(paths, (server.cert, server.key, ca.cert)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(data)
    return tuple(paths)


@pytest.fixture(scope="session")
def powershell_host(ldap_params):
    """What the WS-Management endpoint runs: the lab DC, each command with an administrator's LDAP connection of its own."""
    return PowerShellOnLdap(lambda: open_domain_client(dict(ldap_params, domain_timeout=SCRIPT_TIMEOUT)))


@pytest.fixture(scope="session")
def winrm_password() -> str:
    return secrets.token_urlsafe(16)


# The account holding the endpoint's service principal name in the lab domain, as a Windows host's computer
# account holds HTTP/<its name>.
WSMAN_SERVICE_ACCOUNT = "wsman-http"


@pytest.fixture(scope="session")
def wsman_host_name(samba_dc) -> str:
    """The name the endpoint's Kerberos principal HTTP/<name> carries."""
    return f"wsman.{samba_dc['dns_domain']}"


@pytest.fixture(scope="session")
def wsman_keytab(samba_dc, ldap_params, wsman_host_name, tmp_path_factory) -> str:
    """A keytab for HTTP/<wsman_host_name>, exported from the lab DC's database by samba-tool."""
    spn = f"HTTP/{wsman_host_name}"
    with open_domain_client(ldap_params) as client:
        container = f"CN=Users,{client.domain_facts().distinguished_name}"
        if client.find_user(WSMAN_SERVICE_ACCOUNT) is None:
            try:
                client.create_user(WSMAN_SERVICE_ACCOUNT, container, secrets.token_urlsafe(24) + "-Aa1", "WS-Management test endpoint", True, True)
            except DomainError:
                pass  # another test session of this lab created it meanwhile
        account = client.find_user(WSMAN_SERVICE_ACCOUNT)
        client._call("registering the endpoint's SPN", client._connection.modify, account.distinguished_name, [("replace", "servicePrincipalName", [spn])])
    keytab = str(tmp_path_factory.mktemp("wsman-kerberos") / "http.keytab")
    completed = subprocess.run(
        ["samba-tool", "domain", "exportkeytab", keytab, f"--principal={spn}", "-s", samba_dc["smb_conf"]],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return keytab


def _endpoint(samba_dc, powershell_host, winrm_password, wsman_keytab, tls_files=None) -> WSManEndpoint:
    return WSManEndpoint(
        WINRM_USER, winrm_password, powershell_host, tls_files=tls_files,
        kerberos_principal=f"{samba_dc['admin_user']}@{samba_dc['realm']}", keytab=wsman_keytab,
    )


@pytest.fixture(scope="session")
def https_endpoint(samba_dc, powershell_host, tls_files, winrm_password, wsman_keytab):
    with _endpoint(samba_dc, powershell_host, winrm_password, wsman_keytab, tls_files[:2]) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def http_endpoint(samba_dc, powershell_host, winrm_password, wsman_keytab):
    with _endpoint(samba_dc, powershell_host, winrm_password, wsman_keytab) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def winrm_params(https_endpoint, tls_files, winrm_password, ldap_params) -> dict:
    return dict(
        ldap_params,
        domain_transport="winrm",
        domain_server="127.0.0.1",
        domain_port=https_endpoint.port,
        domain_tls="tls",
        domain_ca_cert=tls_files[2],
        domain_username=f"LAB\\{WINRM_USER}",
        domain_password=winrm_password,
    )


@pytest.fixture(scope="session")
def kerberos_params(winrm_params, samba_dc, wsman_host_name) -> dict:
    """Kerberos over HTTPS, the recommended setting: the lab administrator gets a ticket for HTTP/<wsman_host_name>."""
    return dict(
        winrm_params,
        domain_auth="kerberos",
        domain_username=f"{samba_dc['admin_user']}@{samba_dc['dns_domain']}",
        domain_password=samba_dc["admin_password"],
        domain_kerberos_hostname=wsman_host_name,
    )


@pytest.fixture(scope="session")
def credssp_params(winrm_params) -> dict:
    """CredSSP over HTTPS with NTLM inside: what a management host that is not a DC needs for the double hop."""
    return dict(winrm_params, domain_auth="credssp")
