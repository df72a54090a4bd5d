# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A WS-Management endpoint on loopback that answers the WinRM transport's PowerShell with the lab DC.

What is real: HTTP(S) on a socket, the NTLM handshake (pyspnego acceptor, channel binding on HTTPS), WinRM
message encryption on HTTP, basic authentication on HTTPS, the SOAP envelopes of the five shell actions plus
Send, base64 streams and exit codes, as pywinrm exchanges them with Windows.

What is not: no PowerShell runs. The endpoint recognizes each script the transport sends (it must be, byte
for byte, one of ``_ps_scripts``), reads the JSON on stdin and carries out the same operation on the lab DC
over LDAP, answering with the JSON the script would print. So the suite proves the transport, the wire
protocol, the input/output contract and the error mapping; whether the PowerShell itself does the right
thing on Windows is checked only by parsing (tests/unit/plugins/module_utils/test_ps_scripts.py).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import secrets
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from xml.etree import ElementTree

import pytest
import spnego
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
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import LDAPError, escape_filter_value
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import encode_group_msa_membership

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_BOUNDARY = b"--Encrypted Boundary"
_ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
_NTLM_SIGNATURE_SIZE = 16
_SCRIPTS = {_ps_scripts.build_script(operation): operation for operation in _ps_scripts.OPERATIONS}


class WSManEndpoint:
    """``https://127.0.0.1:<port>/wsman`` (or http) accepting one user; ``execute`` runs each command."""

    def __init__(self, username: str, password: str, execute, tls_files: tuple[str, str] | None = None) -> None:
        self.username = username
        self.password = password
        self.execute = execute
        self.tls_files = tls_files
        self.requests = 0
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
        self.authenticated = False
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
        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        request = self._decrypt(body) if encrypted else body
        status, response = self._dispatch(ElementTree.fromstring(request))
        if encrypted:
            self._reply(status, self._encrypt(response), f'multipart/encrypted;protocol="{_ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"')
        else:
            self._reply(status, response, "application/soap+xml;charset=UTF-8")

    def _reply(self, status: int, body: bytes, content_type: str, headers: tuple = ()) -> None:
        self.send_response(status)
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
            # Basic only over TLS, as Windows' WinRM service allows it.
            expected = base64.b64encode(f"{self.endpoint.username}:{self.endpoint.password}".encode()).decode()
            return (self.endpoint.tls_files is not None and token == expected) or self._unauthorized()
        if self.authenticated:
            return True
        if scheme not in ("NTLM", "Negotiate"):
            return self._unauthorized("Negotiate", 'Basic realm="WSMAN"') if self.endpoint.tls_files else self._unauthorized("Negotiate")
        if self.context is None:
            bindings = None
            if self.endpoint.certificate_hash:
                bindings = spnego.channel_bindings.GssChannelBindings(application_data=b"tls-server-end-point:" + self.endpoint.certificate_hash)
            self.context = spnego.server(protocol="ntlm", channel_bindings=bindings)
        try:
            answer = self.context.step(base64.b64decode(token))
        except spnego.exceptions.SpnegoError:
            self.context = None
            return self._unauthorized()
        if not self.context.complete:
            return self._unauthorized(f"{scheme} {base64.b64encode(answer).decode()}")
        self.authenticated = True
        return True

    def _decrypt(self, body: bytes) -> bytes:
        header, payload = [part for part in body.split(_BOUNDARY + b"\r\n") if part][:2]
        length = int(header.split(b"Length=")[1].strip())
        payload = payload.removeprefix(b"\tContent-Type: application/octet-stream\r\n").removesuffix(_BOUNDARY + b"--\r\n")
        signature_size = struct.unpack("<i", payload[:4])[0]
        message = self.context.unwrap(payload[4:4 + signature_size] + payload[4 + signature_size:]).data
        assert len(message) == length
        return message

    def _encrypt(self, message: bytes) -> bytes:
        wrapped = self.context.wrap(message).data
        return (
            _BOUNDARY + b"\r\n\tContent-Type: " + _ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(message)).encode() + b"\r\n"
            + _BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", _NTLM_SIGNATURE_SIZE) + wrapped + _BOUNDARY + b"--\r\n"
        )

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
            self.shells[shell_id][command_id] = {
                "command": line.findtext("rsp:Command", namespaces=NS),
                "arguments": (line.findtext("rsp:Arguments", default="", namespaces=NS)).split(),
                "stdin": b"",
            }
            content = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        elif name == "Send":
            stream = body.find("rsp:Send/rsp:Stream", NS)
            command = self.shells[shell_id][stream.get("CommandId")]
            command["stdin"] += base64.b64decode(stream.text or "")
            if stream.get("End") == "true":
                command["output"] = self.endpoint.execute(command["command"], command["arguments"], command["stdin"])
            content = "<rsp:SendResponse/>"
        elif name == "Receive":
            command_id = body.find("rsp:Receive/rsp:DesiredStream", NS).get("CommandId")
            stdout, stderr, exit_code = self.shells[shell_id][command_id]["output"]
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


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID><a:RelatesTo>{relates_to}</a:RelatesTo></s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def _fault(relates_to: str, reason: str) -> bytes:
    body = (
        f'<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>'
        '<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858770"/></s:Detail></s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def _clixml_error(text: str) -> bytes:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "_x000A_")
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">{escaped}</S></Objs>'.encode()


class PowerShellOnLdap:
    """Carries out each script of ``_ps_scripts`` on the lab DC, answering as the script would."""

    def __init__(self, ldap: LdapDomainClient) -> None:
        self.ldap = ldap
        self.operations: list[str] = []

    def __call__(self, command: str, arguments: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
        if command != "powershell.exe" or "-EncodedCommand" not in arguments:
            return b"", _clixml_error(f"'{command}' is not recognized as a command this endpoint runs"), 1
        script = base64.b64decode(arguments[arguments.index("-EncodedCommand") + 1]).decode("utf-16-le")
        operation = _SCRIPTS.get(script)
        if operation is None:
            return b"", _clixml_error("The script is not one of _ps_scripts: the endpoint cannot tell what it would do"), 1
        self.operations.append(operation)
        try:
            result = getattr(self, operation)(json.loads(stdin.decode("ascii")))
        except (DomainError, LDAPError) as error:
            # What the wrapper's catch block prints for an exception of the AD cmdlets.
            answer = {"error": {"message": str(error), "type": "Microsoft.ActiveDirectory.Management.ADException", "id": f"ActiveDirectoryServer:{operation}"}}
            return json.dumps(answer).encode("ascii"), b"", 1
        return json.dumps({"result": result}).encode("ascii"), b"", 0

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
            "membership": base64.b64encode(encode_group_msa_membership(settings.password_readers)).decode(),
            "encryption_types": settings.encryption_types,
            "description": settings.description,
            "enabled": settings.enabled,
        }

    def _gmsa_by_guid(self, object_guid: str):
        guid_filter = f"(objectGUID={escape_filter_value(uuid.UUID(object_guid).bytes_le)})"
        entry = self.ldap._search("finding the gMSA", self.ldap.domain_facts().distinguished_name, guid_filter, ("sAMAccountName",))[0]
        name = entry.values("sAMAccountName")[0].decode().removesuffix("$")
        return self.ldap.find_gmsas([name])[name.lower()]

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
        account = self._gmsa_by_guid(data["object_guid"])
        # Set-ADServiceAccount -Replace/-Clear/-Enabled/-PrincipalsAllowed...: what the transport asked for, nothing else.
        values = data["replace"]
        settings = account.settings
        readers = data["password_readers"]
        desired = GmsaSettings(
            dns_host_name=values.get("dNSHostName", settings.dns_host_name),
            spns=tuple(values.get("servicePrincipalName", () if "servicePrincipalName" in data["clear"] else settings.spns)),
            password_readers=settings.password_readers if readers is None else tuple(readers),
            encryption_types=values.get("msDS-SupportedEncryptionTypes", settings.encryption_types),
            description=None if "description" in data["clear"] else values.get("description", settings.description),
            enabled=settings.enabled if data["enabled"] is None else data["enabled"],
        )
        return self._gmsa(self.ldap.update_gmsa(account, desired))

    def delete_gmsa(self, data: dict) -> None:
        self.ldap.delete_gmsa(self._gmsa_by_guid(data["object_guid"]))

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

    def create_user(self, data: dict) -> dict:
        user = self.ldap.create_user(
            data["name"], data["container"], data["password"], data["description"], data["enabled"], data["password_never_expires"]
        )
        return self._user(user)

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
            return {"authenticated": False, "blob": None}
        return {"authenticated": True, "blob": base64.b64encode(blob).decode() if blob else None}


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
    """What the WS-Management endpoint runs: the lab DC, reached with the administrator's LDAP connection."""
    client = open_domain_client(ldap_params)
    assert isinstance(client, LdapDomainClient)
    yield PowerShellOnLdap(client)
    client.close()


@pytest.fixture(scope="session")
def winrm_password() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture(scope="session")
def https_endpoint(powershell_host, tls_files, winrm_password):
    with WSManEndpoint(WINRM_USER, winrm_password, powershell_host, tls_files=tls_files[:2]) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def http_endpoint(powershell_host, winrm_password):
    with WSManEndpoint(WINRM_USER, winrm_password, powershell_host) as endpoint:
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
