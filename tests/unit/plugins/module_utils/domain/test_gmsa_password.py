# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import struct
from unittest import mock

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _gmsa_password
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._gmsa_password import (
    BlobError,
    aes_key,
    current_password,
    kerberos_salt,
    keytab,
    request_ticket,
)


def managed_password_blob(password: bytes) -> bytes:
    """An MSDS-MANAGEDPASSWORD_BLOB as a DC returns it: header, current password + NUL, query intervals."""
    current_offset = 16
    intervals_offset = current_offset + len(password) + 2
    body = password + b"\0\0" + struct.pack("<QQ", 1, 2)
    return struct.pack("<HHIHHHH", 1, 0, 16 + len(body), current_offset, 0, intervals_offset, intervals_offset + 8) + body


@pytest.mark.parametrize(
    "iterations, size, expected",
    [
        # RFC 3962 appendix B, password "password", salt "ATHENA.MIT.EDUraeburn"
        (1, 16, "42263c6e89f4fc28b8df68ee09799f15"),
        (1, 32, "fe697b52bc0d3ce14432ba036a92e65bbb52280990a2fa27883998d72af30161"),
        (2, 16, "c651bf29e2300ac27fa469d693bdda13"),
    ],
)
def test_aes_string_to_key_matches_rfc_3962(iterations, size, expected):
    assert aes_key("password".encode("utf-16-le"), "ATHENA.MIT.EDUraeburn", size, iterations).hex() == expected


def test_unpaired_surrogates_become_replacement_characters():
    lone_surrogate = b"\x00\xd8"
    assert aes_key(lone_surrogate, "salt", 16, 1) == aes_key("\ufffd".encode("utf-16-le"), "salt", 16, 1)


def test_current_password_is_read_from_its_offset():
    password = bytes(range(256))
    assert current_password(managed_password_blob(password)) == password


@pytest.mark.parametrize("blob", [b"", b"\x01\x00" + b"\x00" * 14, managed_password_blob(bytes(256))[:-1]])
def test_malformed_blobs_are_refused(blob):
    with pytest.raises(BlobError):
        current_password(blob)


def test_salt_of_a_gmsa():
    assert kerberos_salt("contoso.com", "WebApp01$", "Contoso.com") == "CONTOSO.COMhostwebapp01.contoso.com"


def test_keytab_layout():
    data = keytab("WebApp01$", "CONTOSO.COM", {18: b"k" * 32})
    assert data[:2] == b"\x05\x02"
    (size,) = struct.unpack(">i", data[2:6])
    entry = data[6:]
    assert len(entry) == size
    assert entry[:2] == b"\x00\x01"  # one component
    assert b"CONTOSO.COM" in entry and b"WebApp01$" in entry
    assert entry.endswith(struct.pack(">H", 32) + b"k" * 32 + struct.pack(">I", 1))


def test_ticket_request_runs_kinit_with_a_private_keytab():
    seen = {}

    def run_command(command):
        keytab_path = command[command.index("-t") + 1].removeprefix("FILE:")
        with open(keytab_path, "rb") as keytab_file:
            seen["keytab"] = keytab_file.read()
        seen["command"] = command
        return 0, "", ""

    with mock.patch.object(_gmsa_password.shutil, "which", return_value="/usr/bin/kinit"):
        check = request_ticket(run_command, "WebApp01", "CONTOSO.COM", "contoso.com", managed_password_blob(bytes(256)))
    assert check.status == "ok"
    assert seen["command"][0] == "/usr/bin/kinit" and seen["command"][-1] == "WebApp01$@CONTOSO.COM"
    assert seen["keytab"].startswith(b"\x05\x02")


def test_ticket_refused_is_reported_with_kinit_message():
    with mock.patch.object(_gmsa_password.shutil, "which", return_value="/usr/bin/kinit"):
        refused = (1, "", "kinit: Preauthentication failed\n")
        check = request_ticket(lambda command: refused, "web", "CONTOSO.COM", "contoso.com", managed_password_blob(bytes(256)))
    assert check.status == "failed" and check.detail == "kinit: Preauthentication failed"


def test_without_kinit_the_check_is_skipped():
    with mock.patch.object(_gmsa_password.shutil, "which", return_value=None):
        check = request_ticket(None, "web", "CONTOSO.COM", "contoso.com", managed_password_blob(bytes(256)))
    assert check.status == "skipped" and "kinit" in check.detail
