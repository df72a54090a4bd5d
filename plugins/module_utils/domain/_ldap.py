# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The collection's LDAP connection to an Active Directory domain controller.

The traffic is protected the ways Windows clients protect it:

* plain LDAP (389) with a sealed SASL GSS-SPNEGO bind (Kerberos or NTLM through pyspnego): every message
  after the bind is signed and encrypted;
* LDAPS (636) or StartTLS, the server certificate checked against the system trust store or ``ca_cert``;
  the bind is GSS-SPNEGO with TLS channel binding (tls-server-end-point), or a simple bind.

sansldap (sans-I/O LDAP messages, what microsoft.ad's LDAP code uses) encodes the bind, search and extended
operations. Its version 0.1 has no add, modify or delete, so this module adds those three (RFC 4511 4.6-4.8).

Transport only: what the entries mean for gMSAs belongs to the domain client built on top of this.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
import struct
import time
import traceback
from collections.abc import Iterable, Mapping

try:
    import sansldap
    import spnego
    import spnego.channel_bindings
    import spnego.exceptions
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from sansldap import asn1
except ImportError:
    HAS_LDAP_LIBRARIES = False
    LDAP_IMPORT_ERROR = traceback.format_exc()
    # Keeps the classes below definable; LDAPConnection.open() reports the missing libraries.
    _LDAPClientBase = _LDAPMessageBase = object
else:
    HAS_LDAP_LIBRARIES = True
    LDAP_IMPORT_ERROR = None
    _LDAPClientBase = sansldap.LDAPClient
    _LDAPMessageBase = sansldap.LDAPMessage

LDAP_PORT = 389
LDAPS_PORT = 636
DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_OPERATION_TIMEOUT = 60
DEFAULT_PAGE_SIZE = 500

TLS_MODES = (None, "ldaps", "start_tls")
AUTH_PROTOCOLS = ("negotiate", "kerberos", "ntlm", "simple")
SEARCH_SCOPES = ("base", "one", "subtree")
MODIFY_OPERATIONS = {"add": 0, "delete": 1, "replace": 2}

# LDAP_SERVER_SD_FLAGS_OID (MS-ADTS 3.1.1.3.4.1.11): which parts of nTSecurityDescriptor a search returns.
SD_FLAGS_CONTROL_OID = "1.2.840.113556.1.4.801"
SD_FLAGS_OWNER = 0x1
SD_FLAGS_GROUP = 0x2
SD_FLAGS_DACL = 0x4
SD_FLAGS_SACL = 0x8

_FILTER_SPECIAL = "*()\\\0"
_DN_SPECIAL = '"+,;<>\\='
_SASL_LENGTH = struct.Struct(">I")

# protocolOp tags (RFC 4511 4.2-4.8) of the operations sansldap 0.1 cannot encode or decode.
_MODIFY_REQUEST, _MODIFY_RESPONSE = 6, 7
_ADD_REQUEST, _ADD_RESPONSE = 8, 9
_DEL_REQUEST, _DEL_RESPONSE = 10, 11
_WRITE_RESPONSES = (_MODIFY_RESPONSE, _ADD_RESPONSE, _DEL_RESPONSE)


class LDAPError(Exception):
    """Any failure talking to the domain controller; ``result_code`` is the LDAP result code when there is one.

    Messages name the server and what failed and never contain the password.
    """

    def __init__(self, message: str, result_code: int | None = None) -> None:
        super().__init__(message)
        self.result_code = result_code


@dataclasses.dataclass(frozen=True)
class LDAPEntry:
    """One search result: its DN and the raw values of each attribute the server returned."""

    dn: str
    attributes: dict[str, list[bytes]]

    def values(self, name: str) -> list[bytes]:
        """The values of ``name``, matched without regard to case as LDAP does; empty if absent."""
        wanted = name.lower()
        return next((values for attribute, values in self.attributes.items() if attribute.lower() == wanted), [])


def escape_filter_value(value: str | bytes) -> str:
    """Escape a value for use inside an LDAP filter (RFC 4515 3).

    Text gets ``*``, ``(``, ``)``, ``\\`` and NUL escaped as ``\\XX``; bytes (a binary objectSid or objectGUID)
    are escaped entirely, byte by byte.
    """
    if isinstance(value, bytes):
        return "".join(f"\\{byte:02x}" for byte in value)
    return "".join(f"\\{ord(char):02x}" if char in _FILTER_SPECIAL else char for char in value)


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for use in a DN, e.g. the ``CN=`` part of a new entry (RFC 4514 2.4).

    ``= `` is escaped as well: RFC 4514 allows it and Active Directory expects it.
    """
    escaped = ["\\00" if char == "\0" else f"\\{char}" if char in _DN_SPECIAL else char for char in value]
    if value[:1] in (" ", "#"):
        escaped[0] = f"\\{value[0]}"
    if value[-1:] == " ":
        escaped[-1] = "\\ "
    return "".join(escaped)


# Why Active Directory refused a bind: the Win32 error, in hex, after "data" in the diagnostic message of result 49
# (invalid credentials). Codes from [MS-ERREF] 2.2; Samba's DC sends the same ones.
_BIND_REFUSALS = {
    "525": "no such user",
    "52e": "wrong user name or password",
    "530": "not allowed to log on at this time",
    "531": "not allowed to log on from this workstation",
    "532": "the password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "the password must be changed before the next logon",
    "775": "the account is locked out",
}
_BIND_REFUSAL_DATA = re.compile(r"\bdata ([0-9a-f]+)\b", re.IGNORECASE)


def describe_result(result_code: int, diagnostic_message: str = "") -> str:
    """Human form of an LDAP result: ``invalid credentials: the password has expired (8009030C: ... data 532 ...)``."""
    names = {code.value: code.name for code in sansldap.LDAPResultCode}
    text = names[result_code].lower().replace("_", " ") if result_code in names else f"result code {result_code}"
    refusal = _BIND_REFUSAL_DATA.search(diagnostic_message) if result_code == sansldap.LDAPResultCode.INVALID_CREDENTIALS else None
    if refusal and refusal.group(1).lower() in _BIND_REFUSALS:
        text = f"{text}: {_BIND_REFUSALS[refusal.group(1).lower()]}"
    return f"{text} ({diagnostic_message.strip()})" if diagnostic_message.strip() else text


class LDAPConnection:
    """A connection to one domain controller, bound when opened. Use as a context manager.

    ``server`` is the DC's DNS name: the Kerberos service principal (``ldap/<server>``), the TLS name checked
    against the certificate and the name in error messages. ``address`` is where to connect when that name
    does not resolve to the DC (defaults to ``server``).

    ``username`` is ``user@REALM`` or ``DOMAIN\\user`` for GSS-SPNEGO and may be omitted for Kerberos to use the
    current credential cache; a simple bind takes a UPN or DN and requires TLS.
    """

    def __init__(
        self,
        server: str,
        *,
        port: int | None = None,
        address: str | None = None,
        tls_mode: str | None = None,
        auth_protocol: str = "negotiate",
        username: str | None = None,
        password: str | None = None,
        ca_cert: str | None = None,
        validate_certs: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> None:
        if tls_mode not in TLS_MODES:
            raise LDAPError(f"tls_mode must be one of ldaps, start_tls or none, not {tls_mode!r}")
        if auth_protocol not in AUTH_PROTOCOLS:
            raise LDAPError(f"auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}, not {auth_protocol!r}")
        if auth_protocol == "simple" and not tls_mode:
            raise LDAPError("a simple bind sends the password in clear text: use tls_mode ldaps or start_tls")
        self.server = server
        self.port = port or (LDAPS_PORT if tls_mode == "ldaps" else LDAP_PORT)
        self.url = f"{'ldaps' if tls_mode == 'ldaps' else 'ldap'}://{server}:{self.port}"
        self.address = address or server
        self.tls_mode = tls_mode
        self.auth_protocol = auth_protocol
        self.username = username
        self._password = password
        self.ca_cert = ca_cert
        self.validate_certs = validate_certs
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self._socket: socket.socket | None = None
        self._protocol: _LDAPProtocol | None = None
        self._sealing_context = None
        self._received = bytearray()

    def __enter__(self) -> LDAPConnection:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def open(self) -> LDAPConnection:
        """Connect, set up TLS if asked and bind; an open connection is closed first."""
        if not HAS_LDAP_LIBRARIES:
            raise LDAPError(f"the LDAP connection needs the Python libraries sansldap, pyspnego and cryptography: {LDAP_IMPORT_ERROR}")
        self.close()
        self._protocol = _LDAPProtocol()
        self._sealing_context = None
        self._received = bytearray()
        self._socket = self._connect()
        try:
            if self.tls_mode == "ldaps":
                self._start_tls_session()
            elif self.tls_mode == "start_tls":
                message_id = self._protocol.extended_request(sansldap.ExtendedOperations.LDAP_START_TLS.value)
                self._check(self._exchange(message_id, sansldap.ExtendedResponse)[-1].result, f"StartTLS on {self.url}")
                self._start_tls_session()
            self._bind()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Unbind and disconnect; safe to call more than once."""
        if self._socket is None:
            return
        try:
            self._protocol.unbind()
            self._send_queued()
        except (OSError, LDAPError, sansldap.LDAPError):
            pass  # the server may already have closed the connection; there is nothing left to tell it
        finally:
            self._socket.close()
            self._socket = None

    def rootdse(self, attributes: Iterable[str] = ("*",)) -> dict[str, list[str]]:
        """The rootDSE attributes (defaultNamingContext, rootDomainNamingContext, ...) as text."""
        entry = self.search("", attributes=attributes, scope="base")[0]
        return {name: [value.decode("utf-8") for value in values] for name, values in entry.attributes.items()}

    def search(
        self,
        base: str,
        ldap_filter: str = "(objectClass=*)",
        attributes: Iterable[str] = (),
        scope: str = "subtree",
        sd_flags: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> list[LDAPEntry]:
        """Every entry under ``base`` matching ``ldap_filter``, fetched page by page.

        ``attributes`` empty means all user attributes. ``sd_flags`` (``SD_FLAGS_*``) selects the parts of
        nTSecurityDescriptor to return; without it AD returns none to a caller that may not read the SACL.
        """
        if scope not in SEARCH_SCOPES:
            raise LDAPError(f"search scope must be one of {', '.join(SEARCH_SCOPES)}, not {scope!r}")
        try:
            parsed_filter = sansldap.LDAPFilter.from_string(ldap_filter)
        except ValueError as error:
            raise LDAPError(f"invalid LDAP filter {ldap_filter!r}: {error}") from error
        controls = [] if sd_flags is None else [_sd_flags_control(sd_flags)]
        # A base search returns at most one entry; paging it would only add a control the server must parse.
        paged = scope != "base" and page_size > 0
        entries: list[LDAPEntry] = []
        cookie = b""
        while True:
            page_control = [sansldap.PagedResultControl(critical=False, size=page_size, cookie=cookie)] if paged else []
            message_id = self._protocol.search_request(
                base_object=base,
                scope=SEARCH_SCOPES.index(scope),
                filter=parsed_filter,
                attributes=list(attributes),
                controls=controls + page_control,
            )
            responses = self._exchange(message_id, sansldap.SearchResultDone)
            done = responses.pop()
            self._check(done.result, f"LDAP search of {base or 'the rootDSE'} on {self.url}")
            entries.extend(
                LDAPEntry(response.object_name, {attribute.name: attribute.values for attribute in response.attributes})
                for response in responses
                if isinstance(response, sansldap.SearchResultEntry)
            )
            cookie = next((control.cookie for control in done.controls if isinstance(control, sansldap.PagedResultControl)), b"")
            if not cookie:
                return entries

    def add(self, dn: str, attributes: Mapping[str, object]) -> None:
        """Create ``dn``. Each attribute value is bytes, text, an integer or a list of those."""
        request = _AddRequest(message_id=0, controls=[], entry=dn, attributes=[(name, _encode_values(values)) for name, values in attributes.items()])
        self._write(request, f"LDAP add of {dn} on {self.url}")

    def modify(self, dn: str, changes: Iterable[tuple[str, str, object]]) -> None:
        """Apply ``(operation, attribute, values)`` changes to ``dn`` in one request; operation is add, delete or replace.

        An empty value list with delete removes the attribute; with replace it clears it.
        """
        encoded = []
        for operation, name, values in changes:
            if operation not in MODIFY_OPERATIONS:
                raise LDAPError(f"modify operation must be one of {', '.join(MODIFY_OPERATIONS)}, not {operation!r}")
            encoded.append((MODIFY_OPERATIONS[operation], name, _encode_values(values)))
        self._write(_ModifyRequest(message_id=0, controls=[], entry=dn, changes=encoded), f"LDAP modify of {dn} on {self.url}")

    def delete(self, dn: str) -> None:
        """Delete the leaf entry ``dn``."""
        self._write(_DeleteRequest(message_id=0, controls=[], entry=dn), f"LDAP delete of {dn} on {self.url}")

    def _connect(self) -> socket.socket:
        target = self.url if self.address == self.server else f"{self.url} (at {self.address})"
        try:
            return socket.create_connection((self.address, self.port), timeout=self.connect_timeout)
        except socket.timeout as error:
            raise LDAPError(f"cannot reach domain controller {target}: no answer within {self.connect_timeout} s") from error
        except OSError as error:
            raise LDAPError(f"cannot reach domain controller {target}: {error.strerror or error}") from error

    def _start_tls_session(self) -> None:
        context = ssl.create_default_context(cafile=self.ca_cert)
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._socket.settimeout(self.connect_timeout)
        try:
            self._socket = context.wrap_socket(self._socket, server_hostname=self.server)
        except (ssl.SSLError, ssl.CertificateError) as error:
            raise LDAPError(f"TLS handshake with {self.url} failed: {error}") from error
        except OSError as error:
            raise LDAPError(f"TLS handshake with {self.url} failed: {error.strerror or error}") from error

    def _bind(self) -> None:
        identity = self.username or "the current Kerberos credential"
        what = f"LDAP bind to {self.url} as {identity}"
        if self.auth_protocol == "simple":
            message_id = self._protocol.bind_simple(self.username, self._password)
            self._check(self._exchange(message_id, sansldap.BindResponse)[-1].result, what)
            return
        try:
            self._bind_spnego(what)
        except spnego.exceptions.SpnegoError as error:
            raise LDAPError(f"{what} failed: {error}") from error

    def _bind_spnego(self, what: str) -> None:
        tls = isinstance(self._socket, ssl.SSLSocket)
        if tls:
            # AD refuses a bind that asks for signing or sealing inside TLS, and Kerberos asks for
            # integrity unless told not to.
            context_req = spnego.ContextReq.mutual_auth | spnego.ContextReq.no_integrity
        else:
            context_req = (
                spnego.ContextReq.mutual_auth
                | spnego.ContextReq.sequence_detect
                | spnego.ContextReq.integrity
                | spnego.ContextReq.confidentiality
            )
        context = spnego.client(
            self.username,
            self._password,
            hostname=self.server,
            service="ldap",
            protocol=self.auth_protocol,
            context_req=context_req,
            channel_bindings=self._channel_bindings() if tls else None,
        )
        server_token = None
        while not context.complete:
            client_token = context.step(server_token)
            if not client_token:
                break
            message_id = self._protocol.bind_sasl("GSS-SPNEGO", cred=client_token)
            response = self._exchange(message_id, sansldap.BindResponse)[-1]
            if response.result.result_code != sansldap.LDAPResultCode.SASL_BIND_IN_PROGRESS:
                self._check(response.result, what)
            server_token = response.server_sasl_creds
        if not context.complete:
            raise LDAPError(f"{what} failed: the server ended the GSS-SPNEGO exchange before it completed")
        if not tls:
            self._sealing_context = context

    def _channel_bindings(self):
        """tls-server-end-point (RFC 5929): a hash of the server certificate, which ties the bind to this TLS session."""
        certificate_der = self._socket.getpeercert(binary_form=True)
        try:
            algorithm = x509.load_der_x509_certificate(certificate_der).signature_hash_algorithm
        except UnsupportedAlgorithm:
            algorithm = None
        if algorithm is None or algorithm.name in ("md5", "sha1"):
            algorithm = hashes.SHA256()
        digest = hashes.Hash(algorithm)
        digest.update(certificate_der)
        return spnego.channel_bindings.GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())

    def _write(self, request, what: str) -> None:
        message_id = self._protocol.send_request(request)
        self._check(self._exchange(message_id, _WriteResponse)[-1].result, what)

    def _check(self, result, what: str) -> None:
        if result.result_code != sansldap.LDAPResultCode.SUCCESS:
            raise LDAPError(f"{what} failed: {describe_result(result.result_code, result.diagnostics_message)}", int(result.result_code))

    def _exchange(self, message_id: int, final_type: type) -> list:
        """Send the queued request and collect its responses up to and including the one of ``final_type``."""
        deadline = time.monotonic() + self.operation_timeout
        self._send_queued()
        responses = []
        while True:
            for message in self._receive(deadline):
                if message.message_id == message_id:
                    responses.append(message)
                    if isinstance(message, final_type):
                        return responses

    def _send_queued(self) -> None:
        data = self._protocol.data_to_send()
        if self._sealing_context is not None:
            token = self._sealing_context.wrap(data, encrypt=True).data
            data = _SASL_LENGTH.pack(len(token)) + token
        self._socket.settimeout(self.operation_timeout)
        try:
            self._socket.sendall(data)
        except OSError as error:
            raise LDAPError(f"sending to {self.url} failed: {error.strerror or error}") from error

    def _receive(self, deadline: float) -> list:
        """Read from the socket until at least one whole LDAP message arrived; return the messages."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LDAPError(f"domain controller {self.url} did not answer within {self.operation_timeout} s")
            self._socket.settimeout(remaining)
            try:
                data = self._socket.recv(65536)
            except socket.timeout:
                continue
            except OSError as error:
                raise LDAPError(f"reading from {self.url} failed: {error.strerror or error}") from error
            if not data:
                raise LDAPError(f"domain controller {self.url} closed the connection")
            try:
                messages = self._protocol.receive(self._unseal(data))
            except (sansldap.ProtocolError, ValueError, asn1.NotEnougData) as error:
                raise LDAPError(f"domain controller {self.url} sent a message that is not valid LDAP: {error!r}") from error
            if messages:
                return messages

    def _unseal(self, data: bytes) -> bytes:
        """Plain LDAP bytes from what arrived; once sealed, each SASL buffer is length-prefixed and wrapped."""
        if self._sealing_context is None:
            return data
        self._received.extend(data)
        plain = bytearray()
        while len(self._received) >= _SASL_LENGTH.size:
            token_end = _SASL_LENGTH.size + _SASL_LENGTH.unpack_from(self._received)[0]
            if len(self._received) < token_end:
                break
            plain.extend(self._sealing_context.unwrap(bytes(self._received[_SASL_LENGTH.size:token_end])).data)
            del self._received[:token_end]
        return bytes(plain)


def _encode_values(values: object) -> list[bytes]:
    if not isinstance(values, (list, tuple)):
        values = [values]
    encoded = []
    for value in values:
        if isinstance(value, bytes):
            encoded.append(value)
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            encoded.append(str(value).encode("utf-8"))
        else:
            raise LDAPError(f"LDAP attribute values must be bytes, text or integers, not {type(value).__name__}")
    return encoded


def _sd_flags_control(flags: int):
    writer = asn1.ASN1Writer()
    with writer.push_sequence() as value:
        value.write_integer(flags)
    return sansldap.LDAPControl(SD_FLAGS_CONTROL_OID, True, bytes(writer.get_data()))


def _write_attribute(writer, name: str, values: list[bytes]) -> None:
    """PartialAttribute ::= SEQUENCE { type AttributeDescription, vals SET OF value AttributeValue }"""
    with writer.push_sequence() as attribute:
        attribute.write_octet_string(name.encode("utf-8"))
        with attribute.push_set_of() as value_set:
            for value in values:
                value_set.write_octet_string(value)


@dataclasses.dataclass(frozen=True)
class _AddRequest(_LDAPMessageBase):
    """AddRequest ::= [APPLICATION 8] SEQUENCE { entry LDAPDN, attributes AttributeList }"""

    tag_number = _ADD_REQUEST

    entry: str
    attributes: list

    def _pack_inner(self, writer, options) -> None:
        writer.write_octet_string(self.entry.encode("utf-8"))
        with writer.push_sequence_of() as attribute_list:
            for name, values in self.attributes:
                _write_attribute(attribute_list, name, values)


@dataclasses.dataclass(frozen=True)
class _ModifyRequest(_LDAPMessageBase):
    """ModifyRequest ::= [APPLICATION 6] SEQUENCE { object LDAPDN, changes SEQUENCE OF change SEQUENCE {
    operation ENUMERATED, modification PartialAttribute } }"""

    tag_number = _MODIFY_REQUEST

    entry: str
    changes: list

    def _pack_inner(self, writer, options) -> None:
        writer.write_octet_string(self.entry.encode("utf-8"))
        with writer.push_sequence_of() as change_list:
            for operation, name, values in self.changes:
                with change_list.push_sequence() as change:
                    change.write_enumerated(operation)
                    _write_attribute(change, name, values)


@dataclasses.dataclass(frozen=True)
class _DeleteRequest(_LDAPMessageBase):
    """DelRequest ::= [APPLICATION 10] LDAPDN, a primitive value where sansldap always writes a constructed one."""

    tag_number = _DEL_REQUEST

    entry: str

    def pack(self, options) -> bytes:
        writer = asn1.ASN1Writer()
        with writer.push_sequence() as envelope:
            envelope.write_integer(self.message_id)
            envelope.write_octet_string(self.entry.encode("utf-8"), tag=asn1.ASN1Tag(asn1.TagClass.APPLICATION, self.tag_number, False))
            if self.controls:
                with envelope.push_sequence(asn1.ASN1Tag(asn1.TagClass.CONTEXT_SPECIFIC, 0, True)) as control_list:
                    for control in self.controls:
                        control.pack(control_list, options.control)
        return bytes(writer.get_data())


@dataclasses.dataclass(frozen=True)
class _WriteResponse:
    """The answer to an add, modify or delete: an LDAPResult and nothing else."""

    message_id: int
    result: object


class _LDAPProtocol(_LDAPClientBase):
    """sansldap's client session, plus the add, modify and delete operations its version 0.1 lacks."""

    def __init__(self) -> None:
        super().__init__()
        self._incomplete = bytearray()

    def send_request(self, request) -> int:
        """Queue a request sansldap has no method for; returns its message id."""
        return self._send(request)

    def receive(self, data: bytes) -> list:
        """Decode every complete message; write responses here, the rest by sansldap (which rejects them)."""
        self._incomplete.extend(data)
        messages = []
        while self._incomplete:
            try:
                header = asn1.ASN1Reader(self._incomplete).peek_header()
            except asn1.NotEnougData:
                break
            frame_length = header.tag_length + header.length
            if len(self._incomplete) < frame_length:
                break
            frame = bytes(self._incomplete[:frame_length])
            del self._incomplete[:frame_length]
            write_response = self._write_response(frame)
            messages.extend([write_response] if write_response else super().receive(frame))
        return messages

    def _write_response(self, frame: bytes) -> _WriteResponse | None:
        envelope = asn1.ASN1Reader(frame).read_sequence()
        message_id = envelope.read_integer()
        operation = envelope.peek_header()
        if operation.tag.tag_class != asn1.TagClass.APPLICATION or operation.tag.tag_number not in _WRITE_RESPONSES:
            return None
        body = envelope.read_sequence(tag=operation.tag, header=operation)
        result = sansldap.LDAPResult(
            result_code=body.read_enumerated(sansldap.LDAPResultCode),
            matched_dn=body.read_octet_string().decode("utf-8"),
            diagnostics_message=body.read_octet_string().decode("utf-8"),
        )
        self._outstanding_requests.discard(message_id)
        return _WriteResponse(message_id, result)
