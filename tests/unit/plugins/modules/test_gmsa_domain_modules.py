# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The logic of the domain modules against an in-memory directory (the transports have their own tests).

``FakeDirectory`` implements the DomainClient contract the way both transports do; the contract suite under
tests/integration checks the real transports against the lab DC.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    AuthenticationFailed,
    DomainClient,
    DomainConnectionError,
    DomainError,
    DomainFacts,
    DomainUser,
    GmsaAccount,
    KdsRootKey,
    Principal,
)
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_domain_info, gmsa_identity, gmsa_kds_root_key

DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
FACTS = DomainFacts("DC=contoso,DC=com", "contoso.com", "contoso.com", "CONTOSO", DOMAIN_SID, "244818ae-87ca-4fcd-92ec-e79e5252348a")
CONNECTION = dict(domain_server="dc01.contoso.com", domain_username="CONTOSO\\admin", domain_password="admin-secret")
IDENTITY_PASSWORD = "Identity-Secret-1"  # nosec - test data


class FakeDirectory(DomainClient):
    """An in-memory domain: principals, gMSAs, KDS keys and users; ``writes`` lists every change made."""

    def __init__(self, kds_keys: int = 1) -> None:
        super().__init__("dc01.contoso.com", float("inf"))
        self._next_rid = 1200
        self.principals = {}
        self.gmsas: dict[str, GmsaAccount] = {}
        self.users: dict[str, DomainUser] = {}
        self.passwords: dict[str, str] = {}
        self.writes: list[tuple] = []
        now = datetime.datetime.now(datetime.timezone.utc)
        self.keys = [KdsRootKey(str(uuid.uuid4()), now, now - datetime.timedelta(hours=11)) for _key in range(kds_keys)]
        for name in ("web-hosts", "Administrator"):
            self._add_principal(name, "CN=Users")

    def _add_principal(self, name: str, container: str) -> Principal:
        self._next_rid += 1
        principal = Principal(f"{DOMAIN_SID}-{self._next_rid}", f"CN={name},{container},DC=contoso,DC=com", name)
        self.principals[name.lower()] = principal
        return principal

    def close(self) -> None:
        pass

    def domain_facts(self) -> DomainFacts:
        return FACTS

    def container_exists(self, dn):
        return dn.lower() in {"cn=managed service accounts,dc=contoso,dc=com", "cn=users,dc=contoso,dc=com", "ou=apps,dc=contoso,dc=com"}

    def find_gmsas(self, names):
        return {name.lower(): self.gmsas[name.lower()] for name in names if name.lower() in self.gmsas}

    def create_gmsa(self, name, container, password_interval_days, settings):
        principal = self._add_principal(f"{name}$", container.split(",DC=")[0])
        account = GmsaAccount(name, f"{name}$", f"CN={name},{container}", principal.sid, str(uuid.uuid4()), password_interval_days, settings)
        self.gmsas[name.lower()] = account
        self.writes.append(("create_gmsa", name))
        return account

    def update_gmsa(self, account, settings):
        self.gmsas[account.name.lower()] = dataclasses.replace(account, settings=settings)
        self.writes.append(("update_gmsa", account.name))
        return self.gmsas[account.name.lower()]

    def delete_gmsa(self, account):
        del self.gmsas[account.name.lower()]
        self.writes.append(("delete_gmsa", account.name))

    def resolve_principals(self, identities):
        resolved = {}
        for identity in identities:
            for principal in self.principals.values():
                if identity.lower() in (principal.sid.lower(), principal.distinguished_name.lower(), principal.sam_account_name.lower()):
                    resolved[identity] = principal
        return resolved

    def kds_root_keys(self):
        return list(self.keys)

    def create_kds_root_key(self, effective_time):
        key = KdsRootKey(str(uuid.uuid4()), datetime.datetime.now(datetime.timezone.utc), effective_time)
        self.keys.append(key)
        self.writes.append(("create_kds_root_key",))
        return key

    def find_user(self, name):
        return self.users.get(name.lower())

    def create_user(self, name, container, password, description, enabled, password_never_expires):
        principal = self._add_principal(name, container.split(",DC=")[0])
        user = DomainUser(name, principal.distinguished_name, principal.sid, enabled, password_never_expires, description)
        self.users[name.lower()] = user
        self.passwords[name.lower()] = password
        self.writes.append(("create_user", name))
        return user

    def update_user(self, user, *, description, enabled, password_never_expires, password):
        if password is not None:
            self.passwords[user.name.lower()] = password
        self.users[user.name.lower()] = dataclasses.replace(user, description=description, enabled=enabled, password_never_expires=password_never_expires)
        self.writes.append(("update_user", user.name, password is not None))
        return self.users[user.name.lower()]

    def delete_user(self, user):
        del self.users[user.name.lower()]
        self.writes.append(("delete_user", user.name))

    def create_group(self, name, container):
        self.writes.append(("create_group", name))
        return self._add_principal(name, container.split(",DC=")[0])

    def set_group_members(self, group_dn, add, remove):
        for name, user in self.users.items():
            groups = [group for group in user.groups if group != group_dn or user.distinguished_name not in remove]
            if user.distinguished_name in add:
                groups.append(group_dn)
            self.users[name] = dataclasses.replace(user, groups=tuple(groups))
        self.writes.append(("set_group_members", group_dn, tuple(add), tuple(remove)))

    def credentials_valid(self, username, password):
        return self.passwords.get(username.lower()) == password

    def read_managed_password(self, account, username, password):
        if not self.credentials_valid(username, password):
            raise AuthenticationFailed(f"{self.server}: the domain refused the password of {username}")
        user = self.users[username.lower()]
        return b"blob" if user.sid in account.settings.password_readers else None


@pytest.fixture
def directory():
    return FakeDirectory()


@pytest.fixture
def run(capsys):
    """Run a module's main() with ``args`` against ``directory``; return its JSON result."""

    def run_module(module, args, directory, check_mode=False, diff=False):
        module_args = dict(CONNECTION, **args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(module_args), mock.patch.object(module, "open_domain_client", return_value=directory), pytest.raises(SystemExit):
            module.main()
        return json.loads(capsys.readouterr().out)

    return run_module


# --- gmsa_account ----------------------------------------------------------------------------------------------

class TestGmsaAccount:
    def test_creates_with_the_defaults_then_changes_nothing(self, run, directory):
        args = dict(accounts=[dict(name="WebApp01", allowed_to_retrieve_password=dict(set=["web-hosts"]))])
        first = run(gmsa_account, args, directory)
        assert first["changed"] is True
        account = first["accounts"][0]
        assert account["dns_hostname"] == "WebApp01.contoso.com"
        assert account["spns"] == ["host/WebApp01", "host/WebApp01.contoso.com"]
        assert account["kerberos_encryption_types"] == ["aes128", "aes256"]
        assert account["password_interval_days"] == 30
        assert account["allowed_to_retrieve_password"] == [directory.principals["web-hosts"].sid]
        assert account["sid"].startswith(DOMAIN_SID + "-") and account["sid"] != DOMAIN_SID
        assert account["distinguished_name"] == "CN=WebApp01,CN=Managed Service Accounts,DC=contoso,DC=com"
        second = run(gmsa_account, args, directory)
        assert second["changed"] is False
        assert directory.writes == [("create_gmsa", "WebApp01")]
        # The domain facts the credspecs need come with the accounts (the domain role reads them no second time).
        assert first["domain"] == second["domain"] == dataclasses.asdict(FACTS)

    def test_many_accounts_in_one_task(self, run, directory):
        result = run(gmsa_account, dict(accounts=[dict(name=f"app{index:02}") for index in range(50)]), directory)
        assert result["changed"] is True
        assert len(directory.gmsas) == 50

    def test_check_mode_changes_nothing_and_predicts(self, run, directory):
        result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")]), directory, check_mode=True)
        assert result["changed"] is True
        assert result["accounts"][0]["sid"] is None
        assert result["accounts"][0]["spns"] == ["host/WebApp01", "host/WebApp01.contoso.com"]
        assert directory.writes == []

    def test_list_options_update_and_diff(self, run, directory):
        run(gmsa_account, dict(accounts=[dict(name="WebApp01")]), directory)
        result = run(gmsa_account, dict(accounts=[dict(
            name="webapp01",
            spn=dict(add=["HTTP/web.contoso.com"], remove=["HOST/WEBAPP01"]),
            kerberos_encryption_types=dict(remove=["aes128"]),
            allowed_to_retrieve_password=dict(add=["Administrator"]),
            description="web",
        )]), directory, diff=True)
        assert result["changed"] is True
        account = result["accounts"][0]
        assert account["spns"] == ["host/WebApp01.contoso.com", "HTTP/web.contoso.com"]
        assert account["kerberos_encryption_types"] == ["aes256"]
        assert result["diff"]["before"]["WebApp01"]["description"] is None
        assert result["diff"]["after"]["WebApp01"]["description"] == "web"
        assert directory.writes[-1] == ("update_gmsa", "WebApp01")

    def test_absent_deletes_once(self, run, directory):
        run(gmsa_account, dict(accounts=[dict(name="WebApp01")]), directory)
        assert run(gmsa_account, dict(accounts=[dict(name="WebApp01", state="absent")]), directory)["changed"] is True
        assert run(gmsa_account, dict(accounts=[dict(name="WebApp01", state="absent")]), directory)["changed"] is False
        assert not directory.gmsas

    @pytest.mark.parametrize(
        "account, message",
        [
            (dict(name="ThisNameIsTooLong"), "accounts[1].name: 'ThisNameIsTooLong' is 17 characters"),
            (dict(name="web*app"), "accounts[1].name: 'web*app' contains '*'"),
            (dict(name="x", spn=dict(add=["not an spn"])), "accounts[1].spn.add[0]"),
            (dict(name="x", spn=dict(set=["HTTP/bad_host!"])), "accounts[1].spn.set[0]"),
            (dict(name="x", dns_hostname="bad..name"), "accounts[1].dns_hostname"),
            (
                dict(name="x", allowed_to_retrieve_password=dict(add=["nobody"])),
                "accounts[1].allowed_to_retrieve_password.add[0]: no user, group or computer 'nobody'",
            ),
            (dict(name="ok"), "accounts[1].name: 'ok' is also accounts[0]"),
            (dict(name="x", path="OU=Missing,DC=contoso,DC=com"), "accounts[1].path: the container 'OU=Missing,DC=contoso,DC=com' does not exist"),
        ],
    )
    def test_bad_input_fails_before_any_change(self, run, directory, account, message):
        result = run(gmsa_account, dict(accounts=[dict(name="ok"), account]), directory)
        assert result["failed"] is True
        assert message in result["msg"]
        assert directory.writes == []

    def test_changing_the_password_interval_is_refused_unless_recreate(self, run, directory):
        run(gmsa_account, dict(accounts=[dict(name="WebApp01", password_interval_days=30)]), directory)
        sid = directory.gmsas["webapp01"].sid
        refused = run(gmsa_account, dict(accounts=[dict(name="Other"), dict(name="WebApp01", password_interval_days=7)]), directory)
        assert refused["failed"] is True
        assert "accounts[1].password_interval_days" in refused["msg"] and "recreate" in refused["msg"]
        assert "other" not in directory.gmsas
        recreated = run(gmsa_account, dict(accounts=[dict(name="WebApp01", password_interval_days=7, recreate=True)]), directory)
        assert recreated["changed"] is True
        assert recreated["accounts"][0]["password_interval_days"] == 7
        assert recreated["accounts"][0]["sid"] != sid

    def test_a_journal_another_run_removed_meanwhile_is_no_error(self, tmp_path):
        journal = gmsa_account.PendingRecreate(str(tmp_path), "S-1-5-21-1-2-3", "WebApp01")
        # The other run unlinks it right after this one saw it there: a check before the unlink cannot help.
        with mock.patch("os.path.exists", return_value=True):
            journal.remove()

    def test_no_kds_root_key_fails_before_creating(self, run):
        directory = FakeDirectory(kds_keys=0)
        result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")]), directory)
        assert result["failed"] is True
        assert "no KDS root key" in result["msg"] and "gmsa_kds_root_key" in result["msg"]
        assert directory.writes == []

    def test_unreachable_dc_names_the_server(self, run, directory):
        with mock.patch.object(directory, "domain_facts", side_effect=DomainConnectionError("cannot reach domain controller ldap://dc01.contoso.com:389")):
            result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")]), directory)
        assert result["failed"] is True
        assert "dc01.contoso.com" in result["msg"]


# --- gmsa_account batches ----------------------------------------------------------------------------------------

class BatchingDirectory(FakeDirectory):
    """Records each batch call; refuses to create or update the account named ``refuse``."""

    def __init__(self, refuse=None):
        super().__init__()
        self.batches = []
        self.refuse = refuse

    def create_gmsas(self, creations):
        self.batches.append(("create_gmsas", len(creations)))
        return super().create_gmsas(creations)

    def update_gmsas(self, updates):
        self.batches.append(("update_gmsas", len(updates)))
        return super().update_gmsas(updates)

    def delete_gmsas(self, accounts):
        self.batches.append(("delete_gmsas", len(accounts)))
        return super().delete_gmsas(accounts)

    def create_gmsa(self, name, container, password_interval_days, settings):
        if name == self.refuse:
            raise DomainError(f"{self.server}: creating gMSA {name}: insufficient access rights")
        return super().create_gmsa(name, container, password_interval_days, settings)


def _accounts(count, **options):
    return [dict(name=f"app{index:03d}", **options) for index in range(count)]


def test_five_hundred_accounts_are_one_batch_per_kind_of_write(run):
    directory = BatchingDirectory()
    first = run(gmsa_account, dict(accounts=_accounts(500)), directory)
    assert first["changed"] and len(first["accounts"]) == 500 and all(account["sid"] for account in first["accounts"])
    assert directory.batches == [("create_gmsas", 500)]
    directory.batches.clear()
    mixed = _accounts(100, description="web") + [dict(name=f"app{index:03d}", state="absent") for index in range(100, 150)]
    run(gmsa_account, dict(accounts=mixed + [dict(name="new001")]), directory)
    assert directory.batches == [("delete_gmsas", 50), ("create_gmsas", 1), ("update_gmsas", 100)]
    directory.batches.clear()
    assert not run(gmsa_account, dict(accounts=mixed + [dict(name="new001")]), directory)["changed"] and directory.batches == []


def test_a_failed_batch_names_what_was_done_what_failed_and_what_was_not_attempted(run):
    directory = BatchingDirectory(refuse="app003")
    result = run(gmsa_account, dict(accounts=_accounts(6)), directory)
    assert result["failed"] and result["changed"]
    assert "creating gMSA app003: insufficient access rights" in result["msg"]
    assert "before the failure, this task created app000, created app001, created app002" in result["msg"]
    assert "not changed: app003, app004, app005" in result["msg"]
    assert [account["name"] for account in result["accounts"]] == ["app000", "app001", "app002"]
    assert sorted(directory.gmsas) == ["app000", "app001", "app002"]
    # A rerun without the refusal creates the rest and nothing twice.
    directory.refuse = None
    rerun = run(gmsa_account, dict(accounts=_accounts(6)), directory)
    assert [account["changed"] for account in rerun["accounts"]] == [False] * 3 + [True] * 3


@pytest.mark.parametrize("check_mode", [True, False])
def test_check_mode_writes_nothing_and_reports_the_same_changes(run, check_mode):
    directory = BatchingDirectory()
    result = run(gmsa_account, dict(accounts=_accounts(3)), directory, check_mode=check_mode)
    assert result["changed"] and [account["changed"] for account in result["accounts"]] == [True] * 3
    assert directory.batches == ([] if check_mode else [("create_gmsas", 3)])


class TestGmsaAccountKdsRootKey:
    """kds_root_key: the key a gMSA needs, made in the same task as the accounts (the domain role's one task)."""

    def test_creates_the_key_before_the_accounts_then_leaves_it(self, run):
        directory = FakeDirectory(kds_keys=0)
        args = dict(accounts=[dict(name="WebApp01")], kds_root_key=dict(lab_mode=True))
        first = run(gmsa_account, args, directory, diff=True)
        assert first["changed"] is True
        assert directory.writes[:2] == [("create_kds_root_key",), ("create_gmsa", "WebApp01")]
        assert first["kds_root_key"]["changed"] is True and first["kds_root_key"]["usable"] is True
        assert first["kds_root_key"]["key_id"] == directory.keys[0].key_id
        assert first["diff"]["after"]["KDS root key"]["key_id"] == directory.keys[0].key_id
        directory.writes.clear()
        rerun = run(gmsa_account, args, directory)
        assert rerun["changed"] is False and directory.writes == []
        # Nothing to create: the key is not even looked up.
        assert "kds_root_key" not in rerun

    def test_an_existing_key_is_reported_when_accounts_are_created(self, run, directory):
        result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")], kds_root_key={}), directory)
        key = result["kds_root_key"]
        assert (key["key_id"], key["usable"], key["changed"]) == (directory.keys[0].key_id, True, False)
        assert ("create_kds_root_key",) not in directory.writes

    def test_a_production_key_warns_that_dcs_use_it_in_ten_hours(self, run):
        directory = FakeDirectory(kds_keys=0)
        with mock.patch.object(gmsa_account.AnsibleModule, "warn") as warn:
            result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")], kds_root_key={}), directory)
        assert result["kds_root_key"]["usable"] is False
        assert "10 hours" in warn.call_args.args[0]

    def test_no_key_and_creation_refused_fails_naming_the_option_before_any_change(self, run):
        directory = FakeDirectory(kds_keys=0)
        result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")], kds_root_key=dict(create=False)), directory)
        assert result["failed"] is True and "kds_root_key.create is false" in result["msg"]
        assert directory.writes == []

    def test_check_mode_predicts_the_key_and_writes_nothing(self, run):
        directory = FakeDirectory(kds_keys=0)
        result = run(gmsa_account, dict(accounts=[dict(name="WebApp01")], kds_root_key={}), directory, check_mode=True)
        assert result["changed"] is True and result["kds_root_key"]["changed"] is True and result["kds_root_key"]["key_id"] is None
        assert directory.writes == []

    def test_a_failure_after_the_key_names_it_among_what_was_done(self, run):
        directory = BatchingDirectory(refuse="app001")
        directory.keys.clear()
        result = run(gmsa_account, dict(accounts=_accounts(3), kds_root_key={}), directory)
        assert result["failed"] and result["changed"]
        assert "before the failure, this task created the KDS root key, created app000" in result["msg"]


# --- gmsa_kds_root_key -----------------------------------------------------------------------------------------

class TestKdsRootKey:
    def test_existing_usable_key_is_reported(self, run, directory):
        result = run(gmsa_kds_root_key, {}, directory)
        assert result["changed"] is False
        assert result["usable"] is True
        assert result["key_id"] == directory.keys[0].key_id

    def test_lab_mode_backdates_so_the_key_is_usable_now(self, run):
        directory = FakeDirectory(kds_keys=0)
        result = run(gmsa_kds_root_key, dict(lab_mode=True), directory)
        assert result["changed"] is True and result["usable"] is True
        assert run(gmsa_kds_root_key, dict(lab_mode=True), directory)["changed"] is False

    def test_production_key_reports_when_usable_and_warns(self, run):
        directory = FakeDirectory(kds_keys=0)
        with mock.patch.object(gmsa_kds_root_key.AnsibleModule, "warn") as warn:
            result = run(gmsa_kds_root_key, {}, directory)
        assert result["changed"] is True and result["usable"] is False
        usable_from = datetime.datetime.fromisoformat(result["usable_from"]) - datetime.datetime.fromisoformat(result["effective_time"])
        assert usable_from == datetime.timedelta(hours=10)
        assert "10 hours" in warn.call_args.args[0]

    def test_absent_key_and_creation_not_allowed_fails(self, run):
        directory = FakeDirectory(kds_keys=0)
        result = run(gmsa_kds_root_key, dict(create=False), directory)
        assert result["failed"] is True
        assert "no KDS root key" in result["msg"] and "create is false" in result["msg"]
        assert directory.writes == []

    def test_check_mode(self, run):
        directory = FakeDirectory(kds_keys=0)
        assert run(gmsa_kds_root_key, {}, directory, check_mode=True)["changed"] is True
        assert directory.writes == []


# --- gmsa_identity ---------------------------------------------------------------------------------------------

class TestIdentity:
    ARGS = dict(name="ccg", password=IDENTITY_PASSWORD, groups=dict(add=["web-hosts"]))

    def test_creates_joins_and_is_idempotent(self, run, directory):
        first = run(gmsa_identity, self.ARGS, directory)
        assert first["changed"] is True and first["password_changed"] is True
        assert first["groups"] == [directory.principals["web-hosts"].distinguished_name]
        assert first["password_never_expires"] is True
        assert run(gmsa_identity, dict(self.ARGS, update_password="always"), directory)["changed"] is False

    def test_update_password_always_sets_a_different_password(self, run, directory):
        run(gmsa_identity, self.ARGS, directory)
        assert run(gmsa_identity, dict(self.ARGS, password="Other-Secret-2"), directory)["changed"] is False
        result = run(gmsa_identity, dict(self.ARGS, password="Other-Secret-2", update_password="always"), directory)
        assert result["changed"] is True and result["password_changed"] is True
        assert directory.passwords["ccg"] == "Other-Secret-2"

    def test_password_never_appears_in_the_output(self, run, directory):
        result = run(gmsa_identity, self.ARGS, directory, diff=True)
        assert IDENTITY_PASSWORD not in json.dumps(result)
        assert result["diff"]["after"]["password"] == "(changed)"

    def test_creation_needs_a_password(self, run, directory):
        result = run(gmsa_identity, dict(name="ccg"), directory)
        assert result["failed"] is True and result["msg"].startswith("password:")

    def test_missing_container_names_the_path(self, run, directory):
        result = run(gmsa_identity, dict(self.ARGS, path="OU=Missing,DC=contoso,DC=com"), directory)
        assert result["failed"] is True and result["msg"].startswith("path: the container")
        assert directory.writes == []

    def test_unknown_group_names_its_field(self, run, directory):
        result = run(gmsa_identity, dict(self.ARGS, groups=dict(add=["web-hosts", "no-such-group"])), directory)
        assert result["failed"] is True
        assert result["msg"].startswith("groups.add[1]: no group 'no-such-group'")
        assert directory.writes == []

    def test_create_groups_makes_the_missing_ones_first(self, run, directory):
        args = dict(self.ARGS, groups=dict(add=["web-hosts", "api-hosts"]), create_groups=True, groups_path="OU=Apps,DC=contoso,DC=com")
        predicted = run(gmsa_identity, args, directory, check_mode=True)
        assert predicted["changed"] is True and "CN=api-hosts,OU=Apps,DC=contoso,DC=com" in predicted["groups"]
        assert directory.writes == []
        result = run(gmsa_identity, args, directory)
        assert directory.writes[0] == ("create_group", "api-hosts")
        assert result["groups"] == [directory.principals["web-hosts"].distinguished_name, directory.principals["api-hosts"].distinguished_name]
        assert run(gmsa_identity, args, directory)["changed"] is False

    @pytest.mark.parametrize(
        "extra, message",
        [
            (dict(groups=dict(add=["S-1-5-21-1-2-3-9999"])), "groups.add[0]: no group 'S-1-5-21-1-2-3-9999' in the domain; create_groups creates"),
            (dict(groups=dict(add=["new-group"]), groups_path="OU=Missing,DC=contoso,DC=com"), "groups_path: the container"),
        ],
    )
    def test_create_groups_refusals(self, run, directory, extra, message):
        result = run(gmsa_identity, dict(self.ARGS, create_groups=True, **extra), directory)
        assert result["failed"] is True and result["msg"].startswith(message)
        assert directory.writes == []

    def test_set_leaves_other_groups_and_absent_deletes(self, run, directory):
        run(gmsa_identity, self.ARGS, directory)
        result = run(gmsa_identity, dict(name="ccg", groups=dict(set=[])), directory)
        assert result["changed"] is True and result["groups"] == []
        assert run(gmsa_identity, dict(name="ccg", state="absent"), directory)["changed"] is True
        assert "ccg" not in directory.users


class TestIdentities:
    """Several users in one task (identities): one connection, each entry as name would handle it."""

    IDENTITIES = [
        dict(name="ccg-web", password=IDENTITY_PASSWORD, groups=dict(add=["web-hosts"])),
        dict(name="ccg-api", password="Api-Secret-3", description="API namespace"),
    ]

    def test_creates_each_then_changes_nothing(self, run, directory):
        first = run(gmsa_identity, dict(identities=self.IDENTITIES, enabled=True), directory)
        assert first["changed"] is True and [result["name"] for result in first["identities"]] == ["ccg-web", "ccg-api"]
        assert all(result["changed"] and result["password_changed"] for result in first["identities"])
        assert first["identities"][0]["groups"] == [directory.principals["web-hosts"].distinguished_name]
        assert first["identities"][1]["description"] == "API namespace" and first["identities"][1]["groups"] == []
        assert directory.passwords == {"ccg-web": IDENTITY_PASSWORD, "ccg-api": "Api-Secret-3"}
        second = run(gmsa_identity, dict(identities=self.IDENTITIES, update_password="always"), directory)
        assert second["changed"] is False and not any(result["changed"] for result in second["identities"])

    def test_passwords_never_appear_in_the_output(self, run, directory):
        result = run(gmsa_identity, dict(identities=self.IDENTITIES), directory, diff=True)
        assert IDENTITY_PASSWORD not in json.dumps(result) and "Api-Secret-3" not in json.dumps(result)
        assert result["diff"]["after"]["ccg-api"]["password"] == "(changed)"

    def test_bad_entries_are_named_before_anything_changes(self, run, directory):
        result = run(gmsa_identity, dict(identities=[self.IDENTITIES[0], dict(name="bad/name", password="x")]), directory)
        assert result["failed"] is True and result["msg"].startswith("identities[1].name:")
        duplicate = run(gmsa_identity, dict(identities=[self.IDENTITIES[0], dict(self.IDENTITIES[1], name="CCG-web")]), directory)
        assert duplicate["failed"] is True and duplicate["msg"].startswith("identities: each user may be named once; ccg-web")
        assert directory.writes == []

    def test_a_failure_midway_names_what_was_changed_and_what_was_not_reached(self, run, directory):
        identities = [self.IDENTITIES[0], dict(name="ccg-bad", password="x", groups=dict(add=["no-such-group"])), self.IDENTITIES[1]]
        result = run(gmsa_identity, dict(identities=identities), directory)
        assert result["failed"] is True and result["changed"] is True
        assert result["msg"].startswith("identities[1].groups.add[0]: no group 'no-such-group'")
        assert "before the failure, this task changed ccg-web" in result["msg"] and result["msg"].endswith("not reached: ccg-api")
        assert [entry["name"] for entry in result["identities"]] == ["ccg-web"] and "ccg-api" not in directory.users

    def test_name_and_identities_exclude_each_other(self, run, directory):
        result = run(gmsa_identity, dict(name="ccg", identities=self.IDENTITIES), directory)
        assert result["failed"] is True and "mutually exclusive" in result["msg"]


class TestGmsaAccountIdentities:
    """The domain side in one task: gmsa_account's identities, written first, then allowed the accounts they list."""

    def test_each_identity_may_read_the_accounts_it_lists_then_nothing_changes(self, run, directory):
        args = dict(
            identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD, accounts=["WebApp01", "Shared$"]),
                        dict(name="ccg-api", password="Api-Secret-3", accounts=["shared"])],
            accounts=[dict(name="WebApp01", allowed_to_retrieve_password=dict(add=["web-hosts"])), dict(name="Shared"), dict(name="Lonely")],
        )
        first = run(gmsa_account, args, directory, diff=True)
        web, api = (directory.users[name].sid for name in ("ccg-web", "ccg-api"))
        readers = {account["name"]: account["allowed_to_retrieve_password"] for account in first["accounts"]}
        assert readers == {"WebApp01": [directory.principals["web-hosts"].sid, web], "Shared": [web, api], "Lonely": []}
        assert [(result["name"], result["changed"], result["sid"]) for result in first["identities"]] == [("ccg-web", True, web), ("ccg-api", True, api)]
        # Users first: an account names them as readers.
        assert [write[0] for write in directory.writes] == ["create_user", "create_user", "create_gmsa", "create_gmsa", "create_gmsa"]
        assert first["diff"]["after"]["identity ccg-web"]["password"] == "(changed)"
        assert IDENTITY_PASSWORD not in json.dumps(first) and "Api-Secret-3" not in json.dumps(first)
        second = run(gmsa_account, args, directory)
        assert second["changed"] is False and len(directory.writes) == 5

    def test_check_mode_predicts_the_accounts_without_what_the_task_would_create(self, run, directory):
        args = dict(
            identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD, accounts=["WebApp01"], groups=dict(add=["WebApp01-hosts"]), create_groups=True)],
            accounts=[dict(name="WebApp01", allowed_to_retrieve_password=dict(add=["WebApp01-hosts", "web-hosts"])),
                      dict(name="Billing", allowed_to_retrieve_password=dict(add=["ccg-web"]))],
        )
        predicted = run(gmsa_account, args, directory, check_mode=True)
        assert predicted["changed"] is True and directory.writes == []
        assert predicted["identities"][0]["sid"] is None and predicted["identities"][0]["created_groups"] == ["WebApp01-hosts"]
        assert predicted["accounts"][0]["allowed_to_retrieve_password"] == [directory.principals["web-hosts"].sid]
        assert predicted["accounts"][1]["allowed_to_retrieve_password"] == []
        applied = run(gmsa_account, args, directory)
        assert applied["accounts"][1]["allowed_to_retrieve_password"] == [directory.users["ccg-web"].sid]
        group = directory.principals["webapp01-hosts"].sid
        assert applied["accounts"][0]["allowed_to_retrieve_password"] == [group, directory.principals["web-hosts"].sid, directory.users["ccg-web"].sid]

    @pytest.mark.parametrize(
        "identity, message",
        [
            (dict(name="ccg-web", password="x", accounts=["Missing"]), "identities[0].accounts[0]: 'Missing' is not one of the accounts of this task"),
            (dict(name="bad/name", password="x"), "identities[0].name:"),
            (dict(name="ccg-web", password="x", accounts=["bad*name"]), "identities[0].accounts[0]: 'bad*name' contains '*'"),
        ],
    )
    def test_bad_identities_are_named_before_anything_changes(self, run, directory, identity, message):
        result = run(gmsa_account, dict(identities=[identity], accounts=[dict(name="WebApp01")]), directory)
        assert result["failed"] is True and result["msg"].startswith(message)
        assert directory.writes == []

    def test_a_failure_in_the_accounts_names_the_identities_changed_before_it(self, run, directory):
        args = dict(
            identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD, accounts=["WebApp01"])],
            accounts=[dict(name="WebApp01", allowed_to_retrieve_password=dict(add=["no-such-group"]))],
        )
        result = run(gmsa_account, args, directory)
        assert result["failed"] is True and result["changed"] is True
        assert result["msg"].startswith("accounts[0].allowed_to_retrieve_password.add[0]: no user, group or computer 'no-such-group'")
        assert result["msg"].endswith("before the failure, this task changed the identity ccg-web")
        assert result["identities"][0]["name"] == "ccg-web" and not directory.gmsas

    def test_a_failure_among_the_identities_names_those_not_reached(self, run, directory):
        identities = [dict(name="ccg-web", password=IDENTITY_PASSWORD), dict(name="ccg-new"), dict(name="ccg-api", password="Api-Secret-3")]
        result = run(gmsa_account, dict(identities=identities, accounts=[dict(name="WebApp01")]), directory)
        assert result["failed"] is True and result["changed"] is True
        assert result["msg"].startswith("identities[1].password: is required to create the user ccg-new")
        assert "this task changed ccg-web" in result["msg"] and result["msg"].endswith("not reached: ccg-api")
        assert not directory.gmsas and "ccg-api" not in directory.users

    def test_absent_identities_are_deleted_with_the_accounts(self, run, directory):
        args = dict(identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD, accounts=["WebApp01"])], accounts=[dict(name="WebApp01")])
        run(gmsa_account, args, directory)
        gone = run(gmsa_account, dict(identities=[dict(name="ccg-web", state="absent")], accounts=[dict(name="WebApp01", state="absent")]), directory)
        assert gone["changed"] is True and not directory.users and not directory.gmsas
        assert run(gmsa_account, dict(identities=[dict(name="ccg-web", state="absent")], accounts=[]), directory)["changed"] is False


class TestGmsaAccountRetrievalChecks:
    """check_retrievals: the chain proven in the task that made it, as gmsa_domain_info proves it."""

    ARGS = dict(
        identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD, accounts=["Web01"])],
        accounts=[dict(name="Web01"), dict(name="Closed")],
        check_retrievals=[dict(username="ccg-web", password=IDENTITY_PASSWORD, accounts=["Web01", "Closed"], kerberos_ticket=False)],
    )

    def test_the_identity_proves_what_the_task_made(self, run, directory):
        result = run(gmsa_account, self.ARGS, directory)
        (web,) = result["retrievals"]
        assert web["username"] == "ccg-web" and [item["account"] for item in web["retrieval"]] == ["Web01", "Closed"]
        assert web["retrieval"][0]["ok"] and web["retrieval"][0]["password_readable"]
        assert "may not retrieve the password of Closed" in web["retrieval"][1]["detail"]
        assert web["retrieval_ok"] is False and result["retrieval_ok"] is False
        # The same checks as gmsa_domain_info's, over the same directory.
        same = run(gmsa_domain_info, dict(check_retrievals=self.ARGS["check_retrievals"]), directory)
        assert same["retrievals"] == result["retrievals"]
        assert IDENTITY_PASSWORD not in json.dumps(result)

    def test_check_mode_proves_nothing(self, run, directory):
        result = run(gmsa_account, self.ARGS, directory, check_mode=True)
        assert result["changed"] is True and "retrievals" not in result and "retrieval_ok" not in result

    def test_a_bad_account_name_is_named_before_anything_changes(self, run, directory):
        args = dict(self.ARGS, check_retrievals=[dict(username="ccg-web", password="x", accounts=["bad/name"])])
        result = run(gmsa_account, args, directory)
        assert result["failed"] is True and result["msg"].startswith("check_retrievals[0].accounts[0]:")
        assert directory.writes == []


# --- gmsa_domain_info ------------------------------------------------------------------------------------------

class TestDomainInfo:
    def test_facts_in_the_shape_credspecs_take(self, run, directory):
        result = run(gmsa_domain_info, {}, directory)
        assert result["changed"] is False
        assert result["domain"] == dict(
            distinguished_name="DC=contoso,DC=com", dns_name="contoso.com", dns_tree_name="contoso.com",
            netbios_name="CONTOSO", sid=DOMAIN_SID, guid="244818ae-87ca-4fcd-92ec-e79e5252348a",
        )
        assert result["kds_root_keys"][0]["usable"] is True

    def test_accounts_and_retrieval_chain(self, run, directory):
        run(gmsa_identity, dict(name="ccg", password=IDENTITY_PASSWORD), directory)
        run(gmsa_account, dict(accounts=[dict(name="Readable", allowed_to_retrieve_password=dict(set=["ccg"])), dict(name="Closed")]), directory)
        check = dict(username="ccg", password=IDENTITY_PASSWORD, accounts=["Readable", "Closed", "Missing"], kerberos_ticket=False)
        result = run(gmsa_domain_info, dict(accounts=["Readable", "Missing"], check_retrieval=check), directory)
        assert [account["exists"] for account in result["accounts"]] == [True, False]
        readable, closed, missing = result["retrieval"]
        assert readable["ok"] and readable["password_readable"]
        assert closed["identity_authenticated"] and not closed["password_readable"] and "may not retrieve" in closed["detail"]
        assert not missing["ok"] and "does not exist" in missing["detail"]
        assert result["retrieval_ok"] is False
        assert IDENTITY_PASSWORD not in json.dumps(result)

    def test_several_identities_in_one_task(self, run, directory):
        run(gmsa_identity, dict(identities=[dict(name="ccg-web", password=IDENTITY_PASSWORD), dict(name="ccg-api", password="Api-Secret-3")]), directory)
        run(gmsa_account, dict(accounts=[
            dict(name="Web01", allowed_to_retrieve_password=dict(set=["ccg-web"])), dict(name="Api01", allowed_to_retrieve_password=dict(set=["ccg-api"])),
        ]), directory)
        checks = [
            dict(username="ccg-web", password=IDENTITY_PASSWORD, accounts=["Web01"], kerberos_ticket=False),
            dict(username="ccg-api", password="Api-Secret-3", accounts=["Api01", "Web01"], kerberos_ticket=False),
        ]
        result = run(gmsa_domain_info, dict(check_retrievals=checks), directory)
        web, api = result["retrievals"]
        assert (web["username"], web["retrieval_ok"], [item["account"] for item in web["retrieval"]]) == ("ccg-web", True, ["Web01"])
        assert api["username"] == "ccg-api" and api["retrieval_ok"] is False
        assert api["retrieval"][0]["ok"] and "may not retrieve" in api["retrieval"][1]["detail"]
        assert result["retrieval_ok"] is False and "retrieval" not in result
        assert IDENTITY_PASSWORD not in json.dumps(result) and "Api-Secret-3" not in json.dumps(result)

    def test_a_bad_account_name_in_check_retrievals_names_its_entry(self, run, directory):
        checks = [dict(username="ccg", password=IDENTITY_PASSWORD, accounts=["Web01"]), dict(username="ccg", password="x", accounts=["bad/name"])]
        result = run(gmsa_domain_info, dict(check_retrievals=checks), directory)
        assert result["failed"] is True and result["msg"].startswith("check_retrievals[1].accounts[0]:")

    def test_wrong_identity_password(self, run, directory):
        run(gmsa_identity, dict(name="ccg", password=IDENTITY_PASSWORD), directory)
        run(gmsa_account, dict(accounts=[dict(name="Readable", allowed_to_retrieve_password=dict(set=["ccg"]))]), directory)
        check = dict(username="ccg", password="wrong", accounts=["Readable"])
        result = run(gmsa_domain_info, dict(check_retrieval=check), directory)
        assert result["retrieval"][0]["identity_authenticated"] is False
        assert "cannot authenticate" in result["retrieval"][0]["detail"]
