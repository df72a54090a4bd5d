"""Domain-side faults against the lab's real Samba AD DC: each ends in a clear error, and a rerun converges.

The DC is shared with every other suite, so it is never stopped: the test that loses the DC mid-batch talks to it
through a loopback TCP proxy of its own (:class:`CuttableProxy`, in front of Samba's LDAP port) and cuts that.
Wrong domain credentials are covered by test_domain_faults.py (test_wrong_password_names_the_server, both
transports). The expired identity password is staged with a fine-grained password policy (a PSO that applies to
the test's user only, maximum password age a few seconds): Samba 4.22 then refuses the identity's NTLM bind with
``data 532`` (ERROR_PASSWORD_EXPIRED), as a Windows DC does for a password older than the maximum age
([MS-ERREF] 2.2; a Windows DC answers an LDAP bind of such a user with result 49 and ``data 532`` in the
diagnostic). pwdLastSet cannot be set to a past time (only 0 or -1), and Samba accepts an NTLM bind with
pwdLastSet=0, which is why the policy stages it.

Faults (what the user sees; what the rerun did):

- The DC stops between two accounts of a batch (LDAP transport).
  Sees: `127.0.0.1: creating gMSA <second>: domain controller ldap://127.0.0.1:PORT closed the connection; before
  the failure, this task created <first>`, changed=true.
  Rerun: created the second account only; both exist once; the run after it changes nothing.
- The portable identity's password expired.
  Sees: gmsa_domain_info check_retrieval: `the identity NAME cannot authenticate: ... invalid credentials: the
  password has expired (... data 532 ...)`.
  Rerun: gmsa_identity (update_password=always) found the password refused and set it again; the check passes.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import open_domain_client
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_domain_info, gmsa_identity

# The lab DC, and the WS-Management endpoint with its fixtures (ldap_params, winrm_params, ...).
pytest_plugins = ("tests.lab.pytest_samba", "tests.integration.wsman_endpoint")


class CuttableProxy:
    """A loopback TCP proxy to the DC's LDAP port that this test owns.

    Before it forwards a client's bytes it asks ``cut_when()``; once that is true it closes every connection and
    its listening socket, as a DC that stops does, and forwards nothing more.
    """

    def __init__(self, host: str, port: int, cut_when) -> None:
        self.target = (host, port)
        self.cut_when = cut_when
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
                if not data or self.cut.is_set() or (from_client and self._cut_now()):
                    break
                sink.sendall(data)
            except OSError:
                break
        if from_client and data and not self.cut.is_set():
            self.stop()

    def _cut_now(self) -> bool:
        with self.lock:  # one question at a time: cut_when may use one connection of its own
            return self.cut_when()

    def stop(self) -> None:
        self.cut.set()
        with self.lock:
            for sock in [self.listener, *self.sockets]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@pytest.fixture
def name() -> str:
    return f"fdc{secrets.token_hex(4)}"


@pytest.mark.parametrize("params", ["ldap"], indirect=True)
def test_the_dc_stopping_between_two_accounts_of_a_batch_fails_naming_what_was_done_and_a_rerun_creates_the_rest(run, ldap_params, name):
    second = f"{name[:-1]}z"
    batch = {"accounts": [{"name": name}, {"name": second}]}
    with open_domain_client(ldap_params) as observer:
        # Checked before each request the module sends: the first account exists, so the DC goes away.
        proxy = CuttableProxy(ldap_params["domain_server"], 389, lambda: bool(observer.find_gmsas([name])))
        try:
            result = run(gmsa_account, batch, domain_port=proxy.port, domain_timeout=20)
        finally:
            proxy.stop()
        assert proxy.cut.is_set(), "the DC was never cut"
        assert result["failed"] is True and result["changed"] is True, result
        assert f"creating gMSA {second}: domain controller ldap://127.0.0.1:{proxy.port} closed the connection" in result["msg"], result["msg"]
        assert f"before the failure, this task created {name}" in result["msg"], result["msg"]
        assert set(observer.find_gmsas([name, second])) == {name.lower()}
        try:
            # The DC is back (the rerun reaches it directly): only the missing account is created.
            rerun = run(gmsa_account, batch)
            assert rerun["changed"] is True, rerun
            assert [account["name"] for account in rerun["accounts"] if account["changed"]] == [second], rerun["accounts"]
            found = observer.find_gmsas([name, second])
            assert set(found) == {name.lower(), second.lower()}
            assert run(gmsa_account, batch)["changed"] is False
        finally:
            run(gmsa_account, {"accounts": [{"name": name, "state": "absent"}, {"name": second, "state": "absent"}]})


# A password this old is expired under the test's policy (seconds, as msDS-MaximumPasswordAge counts 100 ns, negative).
MAX_PASSWORD_AGE_SECONDS = 12


@pytest.fixture
def expiring_identity(ldap_params, name):
    """A user with a password, and a fine-grained password policy (PSO) that applies to it alone and expires it
    MAX_PASSWORD_AGE_SECONDS after it is set. Removed after the test."""
    password = f"Fdc-Pa55w0rd!{secrets.token_hex(3)}"
    with open_domain_client(ldap_params) as client:
        base = client.domain_facts().distinguished_name
        user = client.create_user(name, f"CN=Users,{base}", password, None, True, False)
        pso = f"CN={name}-pso,CN=Password Settings Container,CN=System,{base}"
        # pylint: disable-next=protected-access  # a PSO is no object of the collection: the test writes it raw
        connection = client._connection
        connection.add(pso, {
            "objectClass": "msDS-PasswordSettings",
            "msDS-PasswordSettingsPrecedence": "1",
            "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
            "msDS-PasswordHistoryLength": "0",
            "msDS-PasswordComplexityEnabled": "TRUE",
            "msDS-MinimumPasswordLength": "7",
            "msDS-MinimumPasswordAge": "0",
            "msDS-MaximumPasswordAge": str(-MAX_PASSWORD_AGE_SECONDS * 10**7),
            "msDS-LockoutThreshold": "0",
            "msDS-LockoutObservationWindow": str(-30 * 10**7),
            "msDS-LockoutDuration": str(-30 * 10**7),
            "msDS-PSOAppliesTo": user.distinguished_name,
        })
        try:
            yield {"name": name, "password": password}
        finally:
            connection.delete(pso)
            client.delete_user(client.find_user(name))


@pytest.fixture
def gmsa_for(run, name):
    """A gMSA whose password the identity may read."""
    account = f"{name[:-1]}g"
    assert run(gmsa_account, {"accounts": [{"name": account, "allowed_to_retrieve_password": {"set": [name]}}]})["changed"]
    yield account
    run(gmsa_account, {"accounts": [{"name": account, "state": "absent"}]})


@pytest.mark.parametrize("params", ["ldap"], indirect=True)
def test_an_expired_identity_password_is_named_and_a_rerun_of_the_identity_sets_it_again(run, expiring_identity, gmsa_for):
    identity = expiring_identity
    check = {"check_retrieval": {"username": identity["name"], "password": identity["password"], "accounts": [gmsa_for], "kerberos_ticket": False}}
    time.sleep(MAX_PASSWORD_AGE_SECONDS + 1)

    result = run(gmsa_domain_info, check)
    [retrieval] = result["retrieval"]
    assert retrieval["ok"] is False and retrieval["identity_authenticated"] is False, retrieval
    assert f"the identity {identity['name']} cannot authenticate" in retrieval["detail"]
    assert "invalid credentials: the password has expired" in retrieval["detail"], retrieval["detail"]
    assert identity["password"] not in str(result)

    reset = run(gmsa_identity, {"name": identity["name"], "password": identity["password"], "update_password": "always"})
    assert reset["changed"] is True, reset
    [retrieval] = run(gmsa_domain_info, check)["retrieval"]
    assert retrieval["ok"] is True, retrieval
