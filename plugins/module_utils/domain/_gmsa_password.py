# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Proving from Linux that a gMSA password works: decode it, derive the Kerberos keys, ask the KDC for a TGT.

This is the chain ccg.exe relies on inside a Windows node: the portable identity reads ``msDS-ManagedPassword``,
the node derives the account's keys from it and gets a ticket as ``NAME$``. The ticket request is MIT
``kinit`` with a keytab written to a private temporary directory, so the password never leaves this process
except as key material in that file, removed right after.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

CRYPTOGRAPHY_IMPORT_ERROR = None
try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

# MSDS-MANAGEDPASSWORD_BLOB (MS-ADTS 2.2.19): version, reserved, length, then offsets of the passwords.
_BLOB_HEADER = struct.Struct("<HHIHHHH")
_PASSWORD_BYTES = 256

# RFC 3962: AES string-to-key is PBKDF2-HMAC-SHA1 (4096 iterations by default), then DK(key, "kerberos").
_AES_ENCTYPES = {"aes256-cts-hmac-sha1-96": (18, 32), "aes128-cts-hmac-sha1-96": (17, 16)}
_DEFAULT_ITERATIONS = 4096
# n-fold("kerberos", 128) (RFC 3961 A.1), the DK constant of the string-to-key step.
_KERBEROS_FOLDED = bytes.fromhex("6b65726265726f737b9b5b2b93132b93")

_KEYTAB_VERSION = b"\x05\x02"
_NT_PRINCIPAL = 1


class BlobError(ValueError):
    """The msDS-ManagedPassword value is not an MSDS-MANAGEDPASSWORD_BLOB."""


def current_password(blob: bytes) -> bytes:
    """The current password in a ``msDS-ManagedPassword`` value: 256 bytes of UTF-16LE, its NUL removed."""
    if len(blob) < _BLOB_HEADER.size:
        raise BlobError(f"msDS-ManagedPassword is {len(blob)} bytes, shorter than its header")
    version, _reserved, length, current_offset, _previous_offset, _query_offset, _unchanged_offset = _BLOB_HEADER.unpack_from(blob)
    if version != 1 or length != len(blob) or current_offset + _PASSWORD_BYTES > len(blob):
        raise BlobError("msDS-ManagedPassword does not have the layout of an MSDS-MANAGEDPASSWORD_BLOB version 1")
    return blob[current_offset:current_offset + _PASSWORD_BYTES]


def kerberos_salt(realm: str, account_name: str, dns_domain: str) -> str:
    """The AES salt AD uses for a computer-like account such as a gMSA: ``REALMhost<name>.<domain>``."""
    return f"{realm.upper()}host{account_name.removesuffix('$').lower()}.{dns_domain.lower()}"


def aes_key(password_utf16: bytes, salt: str, key_size: int, iterations: int = _DEFAULT_ITERATIONS) -> bytes:
    """The AES key of a password given as UTF-16LE, as Windows derives it.

    Windows converts the password to UTF-8 first; a gMSA password is random UTF-16 and may hold unpaired
    surrogates, which become U+FFFD like everywhere else in Windows and Samba.
    """
    password = password_utf16.decode("utf-16-le", "replace").encode("utf-8")
    seed = PBKDF2HMAC(algorithm=hashes.SHA1(), length=key_size, salt=salt.encode("utf-8"), iterations=iterations).derive(password)  # nosec B303 - RFC 3962
    encryptor = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()  # nosec - one block per step, as DK defines it
    block = _KERBEROS_FOLDED
    key = b""
    while len(key) < key_size:
        block = encryptor.update(block)
        key += block
    return key[:key_size]


def keytab(principal: str, realm: str, keys: dict[int, bytes], kvno: int = 1) -> bytes:
    """An MIT keytab (format 0x502) holding ``keys`` (enctype -> key) for ``principal@realm``."""
    def counted(data: bytes) -> bytes:
        return struct.pack(">H", len(data)) + data

    components = principal.split("/")
    entries = b""
    for enctype, key in keys.items():
        entry = (
            struct.pack(">H", len(components)) + counted(realm.encode("utf-8"))
            + b"".join(counted(component.encode("utf-8")) for component in components)
            + struct.pack(">IIBH", _NT_PRINCIPAL, int(time.time()), kvno & 0xFF, enctype) + counted(key) + struct.pack(">I", kvno)
        )
        entries += struct.pack(">i", len(entry)) + entry
    return _KEYTAB_VERSION + entries


@dataclass(frozen=True)
class TicketCheck:
    """Outcome of the TGT request: ``status`` is ok, failed or skipped, ``detail`` says why."""

    status: str
    detail: str


def request_ticket(run_command: Callable, account_name: str, realm: str, dns_domain: str, blob: bytes) -> TicketCheck:
    """Ask the KDC (found through krb5.conf / KRB5_CONFIG) for a TGT as the gMSA, with keys from ``blob``.

    ``run_command`` is ``AnsibleModule.run_command``.
    """
    if CRYPTOGRAPHY_IMPORT_ERROR:
        return TicketCheck("skipped", f"deriving the Kerberos keys needs the Python package cryptography: {CRYPTOGRAPHY_IMPORT_ERROR}")
    kinit = shutil.which("kinit")
    if kinit is None:
        return TicketCheck("skipped", "kinit (MIT Kerberos client) is not installed on the controller")
    password = current_password(blob)
    salt = kerberos_salt(realm, account_name, dns_domain)
    keys = {enctype: aes_key(password, salt, size) for enctype, size in _AES_ENCTYPES.values()}
    principal = f"{account_name.removesuffix('$')}$"
    with tempfile.TemporaryDirectory(prefix="gmsa-ticket-") as directory:
        keytab_path = os.path.join(directory, "gmsa.keytab")
        with open(os.open(keytab_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as keytab_file:
            keytab_file.write(keytab(principal, realm.upper(), keys))
        command = [kinit, "-k", "-t", f"FILE:{keytab_path}", "-c", f"FILE:{os.path.join(directory, 'ccache')}", f"{principal}@{realm.upper()}"]
        # kinit gives up on its own once every KDC of krb5.conf timed out (kdc_timeout, max_retries).
        return_code, stdout, stderr = run_command(command)
    if return_code != 0:
        return TicketCheck("failed", (stderr or stdout).strip())
    return TicketCheck("ok", f"got a TGT for {principal}@{realm.upper()}")
