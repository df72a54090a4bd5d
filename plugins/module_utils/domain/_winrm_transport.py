# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The WinRM transport: PowerShell's ActiveDirectory module on a DC or management host, through pywinrm.

One WS-Management shell serves the whole module run (a shell per command costs a TLS and NTLM handshake
each). Each operation runs the same short ``powershell -EncodedCommand`` bootstrap and sends it, on standard
input in pipe mode, one JSON document: the operation's script from ``_ps_scripts``, its input and the DC the
run is pinned to. The script answers with JSON on standard output.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import subprocess
import tempfile
import traceback
from xml.etree import ElementTree

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    ConnectionSettings,
    DomainClient,
    DomainConnectionError,
    DomainError,
    DomainFacts,
    DomainUser,
    BatchFailed,
    GmsaAccount,
    GmsaCreation,
    GmsaSettings,
    KdsRootKey,
    Principal,
    gmsa_attribute_changes,
    gmsa_from_attributes,
    principal_lookup_attribute,
)

WINRM_IMPORT_ERROR = None
try:
    from cryptography.hazmat.primitives import hashes, padding as symmetric_padding
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
    from winrm.protocol import Protocol
    from requests.exceptions import RequestException
except ImportError:
    WINRM_IMPORT_ERROR = traceback.format_exc()

# CredSSP's handshake fails with requests-credssp's own exceptions (pywinrm's credssp extra), not pywinrm's.
CREDSSP_REFUSALS: tuple[type[Exception], ...] = ()
try:
    from requests_credssp.exceptions import AuthenticationException as CredSSPAuthenticationError, NTStatusException

    CREDSSP_REFUSALS = (CredSSPAuthenticationError, NTStatusException)
except ImportError:
    pass  # domain_auth credssp then fails with pywinrm's message that requests-credssp is missing

POWERSHELL = "powershell.exe"
POWERSHELL_ARGUMENTS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand")
# cmd.exe, which runs the command unless WINRS_SKIP_CMD_SHELL, takes at most 8,191 characters
# (https://learn.microsoft.com/en-us/troubleshoot/windows-client/shell-experience/command-line-string-limitation).
CMD_LINE_LIMIT = 8191
# Accounts per PowerShell run of a batch: a run's input and answer stay a few hundred kilobytes, and a run ends
# well within the operation timeouts of WinRM.
BATCH_SIZE = 100
# PowerShell writes errors that escape the script to stderr as CLIXML; only their text is kept.
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def encode_command(script: str) -> str:
    """``-EncodedCommand`` takes the script as base64 of its UTF-16LE text."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def clixml_to_text(stderr: str) -> str:
    """The error lines of a ``#< CLIXML`` stream as plain text (other streams, e.g. progress, are dropped)."""
    if not stderr.startswith("#< CLIXML"):
        return stderr.strip()
    try:
        objects = ElementTree.fromstring(stderr.split("\n", 1)[1])
    except (IndexError, ElementTree.ParseError):
        return stderr.strip()
    lines = [element.text or "" for element in objects.iter() if element.tag.endswith("}S") and element.get("S") == "Error"]
    text = "".join(_CLIXML_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), line) for line in lines)
    return text.strip()


def _epoch(value: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)


class WinRMDomainClient(DomainClient):
    def __init__(self, settings: ConnectionSettings, deadline: float) -> None:
        super().__init__(settings.server, deadline)
        if WINRM_IMPORT_ERROR:
            raise DomainError(f"the winrm transport needs the Python package pywinrm on the controller:\n{WINRM_IMPORT_ERROR}")
        scheme = "https" if settings.tls == "tls" else "http"
        host = f"[{settings.server}]" if ":" in settings.server else settings.server
        self._endpoint = f"{scheme}://{host}:{settings.port}/wsman"
        # A Receive returns after operation_timeout without output at the latest, so the deadline is checked
        # at least that often; the HTTP read waits a little longer than the server does.
        operation_timeout = max(1, min(20, int(self.remaining_time()) - 5))
        self._shell_id: str | None = None
        # The DC the first script picked (Get-ADDomainController -Discover); every later script uses it too.
        self._pinned_server = ""
        self._recipient_key = None
        self._ccache: str | None = None
        self._previous_ccache: str | None = None
        username = settings.username
        if settings.auth == "kerberos" and settings.password:
            username = self._get_ticket(settings)
        self._protocol = Protocol(
            self._endpoint,
            transport=settings.auth,
            username=username,
            password=settings.password,
            server_cert_validation="validate" if settings.validate_certs else "ignore",
            # Explicit, so that REQUESTS_CA_BUNDLE on the controller does not decide which CAs are trusted.
            ca_trust_path=settings.ca_cert,
            read_timeout_sec=operation_timeout + 5,
            operation_timeout_sec=operation_timeout,
            # pywinrm's default ("legacy_requests") follows HTTP(S)_PROXY from the environment; None turns that off.
            proxy=settings.proxy,
            kerberos_hostname_override=settings.kerberos_hostname,
            kerberos_delegation=settings.kerberos_delegation,
        )

    def _get_ticket(self, settings: ConnectionSettings) -> str:
        """kinit with the password into a credential cache of this run (pywinrm's Kerberos uses a cache only); return the principal.

        As Ansible's winrm connection plugin does (_kerb_auth): the password goes to kinit's standard input,
        never its command line; -f asks for a forwardable ticket when it is to be delegated.
        """
        user, _at, realm = (settings.username or "").partition("@")
        if not user or not realm or "\\" in user:
            raise DomainError("domain_username: Kerberos needs the user principal form user@dns.domain (not DOMAIN\\user)")
        principal = f"{user}@{realm.upper()}"
        descriptor, self._ccache = tempfile.mkstemp(prefix="gmsa-krb5cc-")
        os.close(descriptor)
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KRB5CCNAME": f"FILE:{self._ccache}"}
        if os.environ.get("KRB5_CONFIG"):
            environment["KRB5_CONFIG"] = os.environ["KRB5_CONFIG"]
        command = ["kinit", *(["-f"] if settings.kerberos_delegation else []), principal]
        try:
            # Not AnsibleModule.run_command: it has no timeout, and a KDC that does not answer must not hang the run.
            completed = subprocess.run(  # pylint: disable=ansible-bad-function
                command, input=f"{settings.password}\n".encode("utf-8"), capture_output=True, env=environment,
                timeout=max(1, min(30, self.remaining_time())), start_new_session=True, check=False,
            )
        except FileNotFoundError:
            self.close()
            raise DomainError("domain_auth: kerberos with domain_password needs kinit (MIT Kerberos client tools) on the controller") from None
        except subprocess.TimeoutExpired as expired:
            self.close()
            raise DomainConnectionError(
                f"{self._endpoint}: kinit got no answer from the KDCs of realm {realm.upper()} for {principal} within {expired.timeout:.0f} s"
                " (domain_timeout, at most 30 s)"
            ) from None
        if completed.returncode != 0:
            detail = completed.stderr.decode("utf-8", "replace").replace(settings.password, "********").strip()
            self.close()
            raise AuthenticationFailed(f"{self._endpoint}: Kerberos refused the credentials of domain_username {principal}: {detail}")
        # pykerberos (through GSSAPI) reads the cache named here; close() puts the previous value back.
        self._previous_ccache = os.environ.get("KRB5CCNAME")
        os.environ["KRB5CCNAME"] = f"FILE:{self._ccache}"
        return principal

    def close(self) -> None:
        if self._shell_id is not None:
            shell_id, self._shell_id = self._shell_id, None
            try:
                self._protocol.close_shell(shell_id)
            except (WinRMError, WinRMTransportError, RequestException):
                pass  # the shell dies with its session on the server anyway
        if self._ccache is not None:
            ccache, self._ccache = self._ccache, None
            if os.environ.get("KRB5CCNAME") == f"FILE:{ccache}":
                if self._previous_ccache is None:
                    del os.environ["KRB5CCNAME"]
                else:
                    os.environ["KRB5CCNAME"] = self._previous_ccache
            os.unlink(ccache)

    def run(self, operation: str, data: dict) -> object:
        """Run one operation's script with ``data`` as its input; return its ``result``. Raises DomainError."""
        try:
            if self._shell_id is None:
                self._shell_id = self._protocol.open_shell()
            request = {"script": _ps_scripts.build_script(operation), "input": data, "server": self._pinned_server}
            stdout, stderr, return_code = self._execute(json.dumps(request))
        except InvalidCredentialsError:
            raise AuthenticationFailed(f"{self._endpoint}: the WinRM service refused the credentials of domain_username") from None
        except CREDSSP_REFUSALS as error:
            raise AuthenticationFailed(f"{self._endpoint}: the WinRM service refused the credentials of domain_username (CredSSP: {error})") from None
        except WSManFaultError as error:
            raise DomainError(f"{self._endpoint}: WS-Management fault during {operation}: {error.reason}") from None
        except WinRMTransportError as error:
            raise DomainConnectionError(f"{self._endpoint}: unexpected HTTP status {error.code} from the WinRM service during {operation}") from None
        except RequestException as error:
            raise DomainConnectionError(f"{self._endpoint}: cannot reach the WinRM service: {error}") from None
        except WinRMError as error:
            # e.g. the library an authentication needs (Kerberos, CredSSP) is missing on the controller
            raise DomainError(f"{self._endpoint}: {error}") from None
        return self._parse_output(operation, stdout, stderr, return_code)

    def _execute(self, stdin: str) -> tuple[bytes, bytes, int]:
        # Pipe mode, as Ansible's winrm connection plugin runs any command it sends stdin to
        # (ansible/plugins/connection/winrm.py: console_mode_stdin=(stdin_iterator is None)): with a console
        # as stdin, [Console]::In.ReadToEnd() never sees the end of the input.
        command_id = self._protocol.run_command(
            self._shell_id, POWERSHELL, [*POWERSHELL_ARGUMENTS, encode_command(_ps_scripts.BOOTSTRAP)], console_mode_stdin=False
        )
        try:
            # str is sent as code page 437 (pywinrm's send_command_input); the JSON is ASCII.
            self._protocol.send_command_input(self._shell_id, command_id, stdin, end=True)
            stdout, stderr = [], []
            while True:
                self.remaining_time()  # pywinrm itself would wait for output forever
                try:
                    out, err, return_code, done = self._protocol.get_command_output_raw(self._shell_id, command_id)
                except WinRMOperationTimeoutError:
                    continue
                stdout.append(out)
                stderr.append(err)
                if done:
                    return b"".join(stdout), b"".join(stderr), return_code
        finally:
            self._protocol.cleanup_command(self._shell_id, command_id)

    def _parse_output(self, operation: str, stdout: bytes, stderr: bytes, return_code: int) -> object:
        try:
            document = json.loads(stdout.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            detail = clixml_to_text(stderr.decode("utf-8", "replace")) or f"exit code {return_code}, no output"
            raise DomainError(f"{self.server}: PowerShell failed during {operation}: {detail}") from None
        if "error" in document:
            error = document["error"]
            raise DomainError(f"{self.server}: {operation} failed: {error['message']} ({error['id']})")
        self._pinned_server = self._pinned_server or document["server"]
        return document["result"]

    def domain_facts(self) -> DomainFacts:
        return DomainFacts(**self.run("domain_facts", {}))

    def container_exists(self, dn: str) -> bool:
        return self.run("container_exists", {"dn": dn})["exists"]

    def find_gmsas(self, names: list[str]) -> dict[str, GmsaAccount]:
        accounts = (self._gmsa(result) for result in self.run("find_gmsas", {"names": names})["accounts"])
        return {account.name.lower(): account for account in accounts}

    def create_gmsa(self, name: str, container: str, password_interval_days: int, settings: GmsaSettings) -> GmsaAccount:
        return self._gmsa(self.run("create_gmsa", self._creation(GmsaCreation(name, container, password_interval_days, settings))))

    def create_gmsas(self, creations: list[GmsaCreation]) -> list[GmsaAccount]:
        return [self._gmsa(result) for result in self._run_batch("create_gmsas", [self._creation(new) for new in creations])]

    @staticmethod
    def _creation(new: GmsaCreation) -> dict:
        settings = new.settings
        return {
            "name": new.name,
            "container": new.container,
            "password_interval_days": new.password_interval_days,
            "dns_host_name": settings.dns_host_name,
            "spns": list(settings.spns),
            "password_readers": list(settings.password_readers),
            "encryption_types": settings.encryption_types,
            "description": settings.description,
            "enabled": settings.enabled,
        }

    def update_gmsa(self, account: GmsaAccount, settings: GmsaSettings) -> GmsaAccount:
        return self._gmsa(self.run("update_gmsa", self._update(account, settings)))

    def update_gmsas(self, updates: list[tuple[GmsaAccount, GmsaSettings]]) -> list[GmsaAccount]:
        return [self._gmsa(result) for result in self._run_batch("update_gmsas", [self._update(*update) for update in updates])]

    @staticmethod
    def _update(account: GmsaAccount, settings: GmsaSettings) -> dict:
        replace, clear = gmsa_attribute_changes(account.settings, settings, account.membership)
        # The whole descriptor, not -PrincipalsAllowedToRetrieveManagedPassword: the cmdlet would write one of
        # plain grants only, dropping the deny and object ACEs others put there. JSON carries bytes as base64.
        membership = replace.pop("msDS-GroupMSAMembership", None)
        return {
            "object_guid": account.object_guid,
            "replace": replace,
            "clear": clear,
            "enabled": settings.enabled if settings.enabled != account.settings.enabled else None,
            "membership": base64.b64encode(membership).decode("ascii") if membership is not None else None,
        }

    def delete_gmsa(self, account: GmsaAccount) -> None:
        self.run("delete_gmsa", {"object_guid": account.object_guid})

    def delete_gmsas(self, accounts: list[GmsaAccount]) -> None:
        self._run_batch("delete_gmsas", [{"object_guid": account.object_guid} for account in accounts])

    def _run_batch(self, operation: str, items: list[dict]) -> list:
        """Run a batch script on ``items``, :data:`BATCH_SIZE` per PowerShell; the results in order, or :class:`BatchFailed`."""
        results: list = []
        for start in range(0, len(items), BATCH_SIZE):
            try:
                answer = self.run(operation, {"items": items[start:start + BATCH_SIZE]})
            except DomainError as error:
                raise BatchFailed(str(error), start) from None
            results += answer["results"]
            failure = answer["failure"]
            if failure:
                raise BatchFailed(f"{self.server}: {operation} failed: {failure['message']} ({failure['id']})", start + failure["index"])
        return results

    @staticmethod
    def _gmsa(result: dict) -> GmsaAccount:
        membership = result.pop("membership")
        return gmsa_from_attributes(dict(result, membership=base64.b64decode(membership) if membership else None))

    def resolve_principals(self, identities: list[str]) -> dict[str, Principal]:
        lookups = [{"attribute": principal_lookup_attribute(identity), "value": identity} for identity in identities]
        found = self.run("resolve_principals", {"lookups": lookups})["principals"]
        return {item.pop("identity"): Principal(**item) for item in found}

    def kds_root_keys(self) -> list[KdsRootKey]:
        return [self._kds_root_key(key) for key in self.run("kds_root_keys", {})["keys"]]

    def create_kds_root_key(self, effective_time: datetime.datetime) -> KdsRootKey:
        return self._kds_root_key(self.run("create_kds_root_key", {"effective_time": int(effective_time.timestamp())}))

    @staticmethod
    def _kds_root_key(result: dict) -> KdsRootKey:
        return KdsRootKey(key_id=result["key_id"], created=_epoch(result["created"]), effective_time=_epoch(result["effective_time"]))

    def find_user(self, name: str) -> DomainUser | None:
        result = self.run("find_user", {"name": name})
        return self._user(result) if result else None

    def create_user(self, name: str, container: str, password: str, description: str | None, enabled: bool, password_never_expires: bool) -> DomainUser:
        data = {
            "name": name,
            "container": container,
            "password": password,
            "description": description,
            "enabled": enabled,
            "password_never_expires": password_never_expires,
        }
        return self._user(self.run("create_user", data))

    def update_user(self, user: DomainUser, *, description: str | None, enabled: bool, password_never_expires: bool, password: str | None) -> DomainUser:
        data = {
            "sid": user.sid,
            "description": description,
            "enabled": enabled,
            "password_never_expires": password_never_expires,
            "password": password,
        }
        return self._user(self.run("update_user", data))

    def delete_user(self, user: DomainUser) -> None:
        self.run("delete_user", {"sid": user.sid})

    @staticmethod
    def _user(result: dict) -> DomainUser:
        return DomainUser(**dict(result, groups=tuple(result["groups"])))

    def create_group(self, name: str, container: str) -> Principal:
        return Principal(**self.run("create_group", {"name": name, "container": container}))

    def set_group_members(self, group_dn: str, add: list[str], remove: list[str]) -> None:
        self.run("set_group_members", {"group": group_dn, "add": add, "remove": remove})

    def credentials_valid(self, username: str, password: str) -> bool:
        return self.run("credentials_valid", {"username": username, "password": password})["valid"]

    def read_managed_password(self, account: GmsaAccount, username: str, password: str) -> bytes | None:
        if self._recipient_key is None:
            self._recipient_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        data = {"object_guid": account.object_guid, "username": username, "password": password, "recipient_key": self._public_key_xml()}
        result = self.run("read_managed_password", data)
        if not result["authenticated"]:
            raise AuthenticationFailed(f"{self.server}: the domain refused the password of {username}")
        return self._unseal(result["sealed_blob"]) if result["sealed_blob"] else None

    def _public_key_xml(self) -> str:
        """The run's public key as RSACryptoServiceProvider.FromXmlString reads it (.NET Framework 4.5)."""
        numbers = self._recipient_key.public_key().public_numbers()

        def b64(value: int) -> str:
            return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode("ascii")

        return f"<RSAKeyValue><Modulus>{b64(numbers.n)}</Modulus><Exponent>{b64(numbers.e)}</Exponent></RSAKeyValue>"

    def _unseal(self, sealed: dict) -> bytes:
        """Undo the script's sealing: RSA-OAEP (SHA-1, what RSACryptoServiceProvider.Encrypt(..., $true) uses) and AES-CBC."""
        oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        key = self._recipient_key.decrypt(base64.b64decode(sealed["key"]), oaep)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(base64.b64decode(sealed["iv"]))).decryptor()
        padded = decryptor.update(base64.b64decode(sealed["ciphertext"])) + decryptor.finalize()
        unpadder = symmetric_padding.PKCS7(algorithms.AES.block_size).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
