# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.filter.gmsa_identities import gmsa_identities, gmsa_identity_credspecs

ACCOUNTS = [
    {"name": "WebApp01", "service_accounts": [{"name": "web", "namespace": "web"}]},
    {"name": "WebApi01", "service_accounts": [{"name": "api", "namespace": "web"}, {"name": "api2", "namespace": "web"}]},
    {"name": "Billing01", "service_accounts": [{"name": "billing", "namespace": "billing"}]},
]


def test_namespace_scope_makes_one_identity_per_namespace_for_its_accounts_only():
    identities = gmsa_identities(ACCOUNTS, "gmsa", "s3cret!Pass", "namespace")
    assert [(i["name"], i["namespace"], i["accounts"]) for i in identities] == [
        ("gmsa-billing", "billing", ["Billing01"]),
        ("gmsa-web", "web", ["WebApp01", "WebApi01"]),
    ]


def test_namespace_passwords_differ_are_stable_and_are_not_the_secret():
    first = {i["name"]: i["password"] for i in gmsa_identities(ACCOUNTS, "gmsa", "s3cret!Pass")}
    again = {i["name"]: i["password"] for i in gmsa_identities(ACCOUNTS, "gmsa", "s3cret!Pass")}
    other = {i["name"]: i["password"] for i in gmsa_identities(ACCOUNTS, "gmsa", "another!Pass1")}
    assert first == again
    assert first["gmsa-web"] != first["gmsa-billing"]
    assert first["gmsa-web"] != other["gmsa-web"]
    for password in first.values():
        assert "s3cret" not in password
        # AD's complexity rule: upper, lower, digit and a symbol.
        assert any(c.isupper() for c in password) and any(c.islower() for c in password)
        assert any(c.isdigit() for c in password) and any(not c.isalnum() for c in password)


def test_shared_scope_is_one_identity_for_every_account():
    assert gmsa_identities(ACCOUNTS, "gmsa-ccg-shared", "pw", "shared") == [
        {"name": "gmsa-ccg-shared", "password": "pw", "namespace": None, "accounts": ["WebApp01", "WebApi01", "Billing01"]}
    ]


def test_long_namespaces_get_unique_names_within_20_characters():
    accounts = [
        {"name": f"App{n}", "service_accounts": [{"name": "sa", "namespace": f"team-payments-production-{n}"}]} for n in range(2)
    ]
    names = [i["name"] for i in gmsa_identities(accounts, "gmsa", "pw")]
    assert len(set(names)) == 2
    assert all(len(name) <= 20 and name.startswith("gmsa-team-") for name in names)
    longest = [i["name"] for i in gmsa_identities(accounts, "gmsa-ccg-demo", "pw")]
    assert len(set(longest)) == 2 and all(len(name) == 20 for name in longest)


@pytest.mark.parametrize(
    "accounts, username, scope, message",
    [
        ([{"name": "A", "service_accounts": [{"name": "a", "namespace": "x"}, {"name": "a", "namespace": "y"}]}], "gmsa", "namespace",
         r"gmsa_accounts\[0\] \(A\)\.service_accounts: .*exactly one namespace.*got 2 \(x, y\)"),
        ([{"name": "A", "service_accounts": [{"name": "a", "namespace": "x"}], "identity_secret": {"namespaces": ["y"]}}], "gmsa", "namespace",
         r"gmsa_accounts\[0\] \(A\)\.identity_secret\.namespaces: .*stays in the account's namespace x"),
        ([{"name": "A", "service_accounts": [{"name": "a", "namespace": "Bad_NS"}]}], "gmsa", "namespace",
         r"gmsa_accounts\[0\]\.service_accounts\.namespace"),
        (ACCOUNTS, "fourteen-chars", "namespace", r"gmsa_identity_username: .*at most 13 characters; got 14"),
        (ACCOUNTS, "bad/name", "shared", r"gmsa_identity_username"),
        (ACCOUNTS, "gmsa", "cluster", r"gmsa_identity_scope must be one of namespace, shared"),
    ],
)
def test_refused_with_the_field_and_the_rule(accounts, username, scope, message):
    with pytest.raises(AnsibleFilterError, match=message):
        gmsa_identities(accounts, username, "pw", scope)


def test_credspecs_get_their_namespace_identity_and_secret_place():
    identities = gmsa_identities(ACCOUNTS, "gmsa", "pw")
    entries = gmsa_identity_credspecs(
        [{"account_name": "WebApp01", "identity_secret": {"name": "ccg"}}, {"account_name": "Billing01"}], identities
    )
    web = next(i for i in identities if i["name"] == "gmsa-web")
    assert entries[0] == {
        "account_name": "WebApp01",
        "identity": {"username": "gmsa-web", "password": web["password"]},
        "identity_secret": {"name": "ccg", "namespaces": ["web"]},
    }
    assert entries[1]["identity"]["username"] == "gmsa-billing"
    assert entries[1]["identity_secret"] == {"namespaces": ["billing"]}


def test_credspecs_of_a_shared_identity_are_unchanged():
    entries = [{"account_name": "WebApp01"}]
    assert gmsa_identity_credspecs(entries, gmsa_identities(ACCOUNTS, "gmsa", "pw", "shared")) == entries


def test_a_binding_without_namespace_is_left_to_the_argument_specs():
    accounts = [{"name": "A", "service_accounts": [{"name": "a", "namspace": "x"}]}, *ACCOUNTS]
    assert [i["name"] for i in gmsa_identities(accounts, "gmsa", "pw")] == ["gmsa-billing", "gmsa-web"]
