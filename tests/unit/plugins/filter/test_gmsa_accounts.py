# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for the filters that split the playbooks' account model between the domain and cluster modules."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.filter.gmsa_accounts import (
    FilterModule,
    credspec_name,
    gmsa_account_options,
    gmsa_credspec_options,
)

ACCOUNTS = [
    {
        "name": "WebApp01",
        "description": "web",
        "spn": {"add": ["HTTP/web.contoso.com"]},
        "service_accounts": [{"name": "webapp01", "namespace": "web"}],
        "credspec_name": "web",
    },
    {
        "name": "Billing_01",
        "path": "OU=gMSA,DC=contoso,DC=com",
        "host_account_config": {"plugin": "azure_key_vault", "plugin_input": "x"},
        "service_accounts": [{"name": "default", "namespace": "default"}],
    },
]
SERVICE_ACCOUNTS = [{"name": "webapp01", "namespace": "web"}]
PLUGIN = {"plugin_guid": "{6A4C4B4E-1D7F-4A4B-9C7E-3F1B2C3D4E5F}", "plugin_input": "SecretName=${secret_name}"}


def test_account_options_keep_only_the_active_directory_keys():
    assert gmsa_account_options(ACCOUNTS) == [
        {"name": "WebApp01", "description": "web", "spn": {"add": ["HTTP/web.contoso.com"]}},
        {"name": "Billing_01", "path": "OU=gMSA,DC=contoso,DC=com"},
    ]


def test_credspec_options_rename_and_apply_the_default_plugin():
    assert gmsa_credspec_options(ACCOUNTS, PLUGIN) == [
        {
            "account_name": "WebApp01",
            "name": "web",
            "service_accounts": [{"name": "webapp01", "namespace": "web"}],
            "host_account_config": PLUGIN,
        },
        # An account's own plugin wins over the default.
        {
            "account_name": "Billing_01",
            "service_accounts": [{"name": "default", "namespace": "default"}],
            "host_account_config": {"plugin": "azure_key_vault", "plugin_input": "x"},
        },
    ]


def test_credspec_options_without_plugin_add_no_host_account_config():
    account = {"name": "WebApp01", "service_accounts": SERVICE_ACCOUNTS}
    expected = [{"account_name": "WebApp01", "service_accounts": SERVICE_ACCOUNTS}]
    assert gmsa_credspec_options([account]) == expected
    assert gmsa_credspec_options([account], {}) == expected


@pytest.mark.parametrize("account", [{"name": "WebApp01"}, {"name": "WebApp01", "service_accounts": []}])
def test_an_account_no_pod_could_use_is_refused(account):
    with pytest.raises(AnsibleFilterError, match=r"gmsa_accounts\[0\] \(WebApp01\) has no service_accounts, so no pod could use its credspec"):
        gmsa_credspec_options([account])
    assert gmsa_account_options([account]) == [{"name": "WebApp01"}]  # the domain half needs none


@pytest.mark.parametrize("account, message", [
    ({"name": "WebApp01", "servce_accounts": []}, r"gmsa_accounts\[0\] \(WebApp01\) has unknown keys servce_accounts"),
    ({"description": "no name"}, r"gmsa_accounts\[0\]\.name is required"),
    ("WebApp01", r"gmsa_accounts\[0\] must be a dict"),
])
def test_bad_entries_name_the_entry_and_the_key(account, message):
    for split in (gmsa_account_options, gmsa_credspec_options):
        with pytest.raises(AnsibleFilterError, match=message):
            split([account])


def test_the_model_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="must be the list of accounts"):
        gmsa_account_options({"name": "WebApp01"})


@pytest.mark.parametrize("account, expected", [
    ({"name": "WebApp01"}, "webapp01"),
    ({"name": "Web_App.01$"}, "web-app-01"),
    ({"name": "WebApp01", "credspec_name": "custom-name"}, "custom-name"),
    ("Billing$", "billing"),
])
def test_credspec_name_matches_gmsa_credspec(account, expected):
    assert credspec_name(account) == expected


@pytest.mark.parametrize("account", [{"name": "ThisNameIsFarTooLong"}, {"name": "WebApp01", "credspec_name": "Not_Valid"}])
def test_credspec_name_rejects_invalid_names(account):
    with pytest.raises(AnsibleFilterError, match="credspec_name: "):
        credspec_name(account)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"gmsa_account_options", "gmsa_credspec_options", "credspec_name"}
