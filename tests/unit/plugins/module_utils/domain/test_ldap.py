"""Unit tests of the LDAP connection that need no domain controller: escaping, encoding, error messages.

Error mapping is checked against throw-away loopback sockets, a few of them answering with sansldap's server
side, so the real socket and message code paths run.
"""

from __future__ import annotations

import socket
import threading

import pytest
import sansldap

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ldap
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import (
    LDAPConnection,
    LDAPEntry,
    LDAPError,
    describe_result,
    escape_dn_value,
    escape_filter_value,
)

PASSWORD = "S3cret-never-shown"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain name", "plain name"),
        ("a*b(c)d\\e", "a\\2ab\\28c\\29d\\5ce"),
        ("nul\0byte", "nul\\00byte"),
        ("Ünïcode stays", "Ünïcode stays"),
        (b"\x01\x05\xff", "\\01\\05\\ff"),
    ],
)
def test_escape_filter_value(value, expected):
    assert escape_filter_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("web app", "web app"),
        ('a,b+c"d\\e<f>g;h=i', 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i'),
        (" leading", "\\ leading"),
        ("#hash", "\\#hash"),
        ("trailing ", "trailing\\ "),
        (" ", "\\ "),
        ("ends in backslash space\\ ", "ends in backslash space\\\\\\ "),
        ("nul\0", "nul\\00"),
        ("", ""),
    ],
)
def test_escape_dn_value(value, expected):
    assert escape_dn_value(value) == expected


def test_describe_result_names_the_result_and_keeps_the_diagnostic():
    assert describe_result(49, "80090308: LdapErr: data 52e ") == "invalid credentials: wrong user name or password (80090308: LdapErr: data 52e)"
    assert describe_result(32) == "no such object"
    assert describe_result(4711) == "result code 4711"


def test_entry_values_ignore_attribute_case():
    entry = LDAPEntry("CN=x", {"sAMAccountName": [b"x$"]})
    assert entry.values("samaccountname") == [b"x$"]
    assert entry.values("description") == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"auth_protocol": "simple"}, "simple bind sends the password in clear text"),
        ({"tls_mode": "tls"}, "tls_mode must be one of ldaps, start_tls or none"),
        ({"auth_protocol": "digest"}, "auth_protocol must be one of negotiate, kerberos, ntlm, simple"),
    ],
)
def test_invalid_options_are_refused_before_connecting(options, message):
    with pytest.raises(LDAPError, match=message):
        LDAPConnection("dc.example.test", **options)


def test_default_ports_follow_the_tls_mode():
    assert LDAPConnection("dc.example.test").url == "ldap://dc.example.test:389"
    assert LDAPConnection("dc.example.test", tls_mode="start_tls").url == "ldap://dc.example.test:389"
    assert LDAPConnection("dc.example.test", tls_mode="ldaps").url == "ldaps://dc.example.test:636"


def queued_bytes(request) -> bytes:
    protocol = _ldap._LDAPProtocol()
    protocol.send_request(request)
    return protocol.data_to_send()


def test_write_requests_are_encoded_as_rfc_4511_says():
    add = _ldap._AddRequest(message_id=0, controls=[], entry="CN=x", attributes=[("cn", [b"x"])])
    modify = _ldap._ModifyRequest(message_id=0, controls=[], entry="CN=x", changes=[(2, "cn", [b"y"])])
    delete = _ldap._DeleteRequest(message_id=0, controls=[], entry="CN=x")

    assert queued_bytes(add) == bytes.fromhex("3018 020101 6813 0404434e3d78 300b 3009 0402636e 3103040178")
    assert queued_bytes(modify) == bytes.fromhex("301d 020101 6618 0404434e3d78 3010 300e 0a0102 3009 0402636e 3103040179")
    assert queued_bytes(delete) == bytes.fromhex("3009 020101 4a04434e3d78")


def test_write_responses_are_decoded_across_partial_reads():
    protocol = _ldap._LDAPProtocol()
    modify_response = bytes.fromhex("300d 020102 6708 0a0120 0400 040178")

    assert not protocol.receive(modify_response[:5])
    (response,) = protocol.receive(modify_response[5:])

    assert response.message_id == 2
    assert response.result.result_code == sansldap.LDAPResultCode.NO_SUCH_OBJECT
    assert response.result.diagnostics_message == "x"


def test_values_are_encoded_from_text_integers_and_bytes():
    assert _ldap._encode_values(["a", 4096, b"\x00"]) == [b"a", b"4096", b"\x00"]
    assert _ldap._encode_values("single") == [b"single"]
    with pytest.raises(LDAPError, match="not bool"):
        _ldap._encode_values(True)


@pytest.fixture(name="listener")
def fixture_listener():
    """A loopback TCP listener; tests decide how (and whether) it answers."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def serve_once(listener: socket.socket, respond) -> threading.Thread:
    """Accept one connection and answer each LDAP request with ``respond(ldap_server, request)``."""

    def run():
        connection = listener.accept()[0]
        with connection:
            ldap_server = sansldap.LDAPServer()
            while data := connection.recv(65536):
                try:
                    requests = ldap_server.receive(data)
                except sansldap.ProtocolError:
                    return  # the client's unbind ends the session
                for request in requests:
                    respond(ldap_server, request)
                connection.sendall(ldap_server.data_to_send())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def ntlm_connection(port: int, **options) -> LDAPConnection:
    return LDAPConnection("127.0.0.1", port=port, auth_protocol="ntlm", username="LAB\\someone", password=PASSWORD, **options)


def test_refused_connection_says_the_domain_controller_is_unreachable(listener):
    port = listener.getsockname()[1]
    listener.close()

    with pytest.raises(LDAPError, match=rf"^cannot reach domain controller ldap://127\.0\.0\.1:{port}: Connection refused$"):
        ntlm_connection(port).open()


def test_rejected_bind_names_server_user_and_result_but_not_the_password(listener):
    def reject(ldap_server, request):
        ldap_server.bind_response(
            request.message_id,
            result_code=sansldap.LDAPResultCode.INVALID_CREDENTIALS,
            diagnostics_message="80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1",
        )

    serve_once(listener, reject)
    port = listener.getsockname()[1]
    with pytest.raises(LDAPError) as caught:
        ntlm_connection(port).open()

    assert str(caught.value) == (
        f"LDAP bind to ldap://127.0.0.1:{port} as LAB\\someone failed: invalid credentials: wrong user name or password "
        "(80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1)"
    )
    assert caught.value.result_code == 49
    assert PASSWORD not in str(caught.value)


def test_silent_server_hits_the_operation_timeout(listener):
    with pytest.raises(LDAPError, match=r"did not answer within 0\.2 s"):
        ntlm_connection(listener.getsockname()[1], operation_timeout=0.2).open()


def test_server_closing_the_connection_is_reported(listener):
    def hang_up():
        connection = listener.accept()[0]
        connection.recv(65536)
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(LDAPError, match="closed the connection|reading from ldap://127.0.0.1"):
        ntlm_connection(listener.getsockname()[1]).open()


@pytest.mark.parametrize(
    ("data", "reason"),
    [("532", "the password has expired"), ("533", "the account is disabled"), ("701", "the account has expired"), ("775", "the account is locked out")],
)
def test_describe_result_says_why_active_directory_refused_a_bind(data, reason):
    # What Samba 4.22 sent to the bind of a user whose fine-grained password policy had expired its password.
    diagnostic = f"8009030C: LdapErr: DSID-0C0904DC, comment: AcceptSecurityContext error, data {data}, v1db1"
    assert describe_result(49, diagnostic) == f"invalid credentials: {reason} ({diagnostic})"


def test_describe_result_leaves_an_unknown_refusal_and_other_results_as_they_are():
    assert describe_result(49, "data 999") == "invalid credentials (data 999)"
    assert describe_result(32, "data 532") == "no such object (data 532)"
