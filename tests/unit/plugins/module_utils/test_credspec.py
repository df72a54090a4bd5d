# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils._credspec import (
    CCG_PLUGIN_GUIDS,
    adopt_credspec,
    build_credspec,
    diff_credspec,
    plugin_of,
    to_json,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError

CONTOSO = {
    "dns_name": "contoso.com",
    "dns_tree_name": "contoso.com",
    "netbios_name": "CONTOSO",
    "sid": "S-1-5-21-2126729477-2524075714-3094792973",
    # As Get-ADDomain's ObjectGUID may come back from a transport: braced, upper case.
    "guid": "{244818AE-87CA-4FCD-92EC-E79E5252348A}",
}

# What New-CredentialSpec -AccountName WebApp01$ writes for this domain, in Microsoft's published key order.
CONTOSO_WEBAPP01_JSON = """\
{
  "CmsPlugins": [
    "ActiveDirectory"
  ],
  "DomainJoinConfig": {
    "Sid": "S-1-5-21-2126729477-2524075714-3094792973",
    "MachineAccountName": "WebApp01",
    "Guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
    "DnsTreeName": "contoso.com",
    "DnsName": "contoso.com",
    "NetBiosName": "CONTOSO"
  },
  "ActiveDirectoryConfig": {
    "GroupManagedServiceAccounts": [
      {
        "Name": "WebApp01",
        "Scope": "contoso.com"
      },
      {
        "Name": "WebApp01",
        "Scope": "CONTOSO"
      }
    ]
  }
}
"""


def test_credspec_json_is_pinned():
    assert to_json(build_credspec(CONTOSO, "WebApp01$")) == CONTOSO_WEBAPP01_JSON


def test_credspec_keeps_microsofts_key_order():
    spec = build_credspec(CONTOSO, "WebApp01")
    assert list(spec) == ["CmsPlugins", "DomainJoinConfig", "ActiveDirectoryConfig"]
    assert list(spec["DomainJoinConfig"]) == ["Sid", "MachineAccountName", "Guid", "DnsTreeName", "DnsName", "NetBiosName"]


def test_credspec_with_additional_accounts_and_azure_key_vault_plugin():
    spec = build_credspec(
        {**CONTOSO, "dns_name": "dev.contoso.com", "netbios_name": "DEV"},
        "WebApp01",
        additional_accounts=[{"name": "LogAccount01$"}, {"name": "gMSA3", "domain": "emea.contoso.com"}],
        host_account_config={
            "plugin_guid": CCG_PLUGIN_GUIDS["azure_key_vault"],
            "plugin_input": "ObjectId=00000000-0000-0000-0000-000000000001;SecretUri=https://contoso.vault.azure.net/secrets/gmsa",
        },
    )
    assert spec["DomainJoinConfig"]["DnsTreeName"] == "contoso.com"
    assert spec["DomainJoinConfig"]["DnsName"] == "dev.contoso.com"
    assert spec["ActiveDirectoryConfig"] == {
        "GroupManagedServiceAccounts": [
            {"Name": "WebApp01", "Scope": "dev.contoso.com"},
            {"Name": "WebApp01", "Scope": "DEV"},
            {"Name": "LogAccount01", "Scope": "dev.contoso.com"},
            {"Name": "gMSA3", "Scope": "emea.contoso.com"},
        ],
        "HostAccountConfig": {
            "PortableCcgVersion": "1",
            "PluginGUID": "{CCC2A336-D7F3-4818-A213-272B7924213E}",
            "PluginInput": "ObjectId=00000000-0000-0000-0000-000000000001;SecretUri=https://contoso.vault.azure.net/secrets/gmsa",
        },
    }
    assert list(spec["ActiveDirectoryConfig"]["HostAccountConfig"]) == ["PortableCcgVersion", "PluginGUID", "PluginInput"]


def test_credspec_plugin_presets():
    assert dict(CCG_PLUGIN_GUIDS) == {
        "azure_key_vault": "{CCC2A336-D7F3-4818-A213-272B7924213E}",
        "aws_secrets_manager": "{859E1386-BDB4-49E8-85C7-3070B13920E1}",
    }


def test_to_json_is_ascii_and_round_trips():
    spec = build_credspec(CONTOSO, "WebApp01", host_account_config={"plugin_guid": "{859E1386-BDB4-49E8-85C7-3070B13920E1}", "plugin_input": "sécret"})
    text = to_json(spec)
    assert text.isascii()
    assert '"PluginInput": "s\\u00e9cret"' in text
    assert json.loads(text) == spec


@pytest.mark.parametrize(
    "domain_change, account, extra, host, message",
    [
        ({"sid": "S-1-5-21-1-2-3-1105"}, "WebApp01", [], None, "domain.sid: 'S-1-5-21-1-2-3-1105' is the SID of an account"),
        ({"sid": "S-1-5-21-x"}, "WebApp01", [], None, "domain.sid: 'S-1-5-21-x' is not a SID"),
        ({"guid": "244818ae-87ca-4fcd-92ec"}, "WebApp01", [], None, "domain.guid: '244818ae-87ca-4fcd-92ec' is not a GUID"),
        ({"dns_name": "contoso_com"}, "WebApp01", [], None, "domain.dns_name: label 'contoso_com'"),
        ({"dns_tree_name": "contoso.com."}, "WebApp01", [], None, "domain.dns_tree_name: 'contoso.com.' ends with '.'"),
        ({"netbios_name": "CONTOSO:COM"}, "WebApp01", [], None, "domain.netbios_name: 'CONTOSO:COM' contains ':'"),
        ({"sid": None}, "WebApp01", [], None, "domain.sid: is required"),
        ({}, "web-app-production01", [], None, "account_name: 'web-app-production01' is 20 characters"),
        ({}, "Web App", [], None, "account_name: 'Web App' contains ' '"),
        ({}, "WebApp01", [{"name": "ok"}, {"name": "bad|name"}], None, "additional_accounts[1].name: 'bad|name' contains '|'"),
        ({}, "WebApp01", [{"domain": "contoso.com"}], None, "additional_accounts[0].name: is required"),
        ({}, "WebApp01", [{"name": "Log01", "domain": "emea..contoso.com"}], None, "additional_accounts[0].domain: 'emea..contoso.com' has an empty label"),
        ({}, "WebApp01", [{"name": "Log01", "domain": ""}], None, "additional_accounts[0].domain: must not be empty"),
        ({}, "WebApp01", [], {"plugin_guid": "CCC2A336-D7F3-4818-A213-272B7924213E", "plugin_input": "x"}, "host_account_config.plugin_guid: "),
        ({}, "WebApp01", [], {"plugin_guid": "{not-a-guid}", "plugin_input": "x"}, "host_account_config.plugin_guid: '{not-a-guid}' is not a GUID"),
        ({}, "WebApp01", [], {"plugin_input": "x"}, "host_account_config.plugin_guid: is required"),
        ({}, "WebApp01", [], {"plugin_guid": "{CCC2A336-D7F3-4818-A213-272B7924213E}"}, "host_account_config.plugin_input: is required"),
        (
            {},
            "WebApp01",
            [],
            {"plugin_guid": "{CCC2A336-D7F3-4818-A213-272B7924213E}", "plugin_input": {"CredentialArn": "arn"}},
            "host_account_config.plugin_input: must be a non-empty string",
        ),
    ],
)
def test_credspec_bad_input_names_the_field(domain_change, account, extra, host, message):
    with pytest.raises(ValidationError) as info:
        build_credspec({**CONTOSO, **domain_change}, account, extra, host)
    assert str(info.value).startswith(message)


def test_diff_of_matching_credspec_is_empty_and_ignores_case_and_account_order():
    expected = build_credspec(CONTOSO, "WebApp01")
    actual = copy.deepcopy(expected)
    actual["DomainJoinConfig"]["MachineAccountName"] = "webapp01"
    actual["DomainJoinConfig"]["Guid"] = "244818AE-87CA-4FCD-92EC-E79E5252348A"
    # kubernetes-sigs/windows-gmsa's samples list the NetBIOS scope first.
    actual["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"].reverse()
    assert diff_credspec(actual, expected) == []


def test_diff_reports_paths_missing_and_extra_values():
    expected = build_credspec(CONTOSO, "WebApp01", host_account_config={"plugin_guid": CCG_PLUGIN_GUIDS["azure_key_vault"], "plugin_input": "ObjectId=a"})
    actual = copy.deepcopy(expected)
    actual["DomainJoinConfig"]["Sid"] = "S-1-5-21-2126729477-2524075714-3094792973-1105"
    del actual["DomainJoinConfig"]["DnsTreeName"]
    actual["DomainJoinConfig"]["Extra"] = "x"
    actual["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"][1] = {"Name": "WebApp02", "Scope": "CONTOSO"}
    actual["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"] = "objectid=a"
    assert diff_credspec(actual, expected) == [
        {"path": "DomainJoinConfig.Sid", "expected": "S-1-5-21-2126729477-2524075714-3094792973", "actual": "S-1-5-21-2126729477-2524075714-3094792973-1105"},
        {"path": "DomainJoinConfig.DnsTreeName", "expected": "contoso.com", "actual": None},
        {"path": "DomainJoinConfig.Extra", "expected": None, "actual": "x"},
        {"path": "ActiveDirectoryConfig.GroupManagedServiceAccounts", "expected": {"Name": "WebApp01", "Scope": "CONTOSO"}, "actual": None},
        {"path": "ActiveDirectoryConfig.GroupManagedServiceAccounts", "expected": None, "actual": {"Name": "WebApp02", "Scope": "CONTOSO"}},
        {"path": "ActiveDirectoryConfig.HostAccountConfig.PluginInput", "expected": "ObjectId=a", "actual": "objectid=a"},
    ]


def test_diff_reports_a_whole_missing_section():
    expected = build_credspec(CONTOSO, "WebApp01", host_account_config={"plugin_guid": CCG_PLUGIN_GUIDS["aws_secrets_manager"], "plugin_input": "{}"})
    actual = build_credspec(CONTOSO, "WebApp01")
    assert diff_credspec(actual, expected) == [
        {"path": "ActiveDirectoryConfig.HostAccountConfig", "expected": expected["ActiveDirectoryConfig"]["HostAccountConfig"], "actual": None},
    ]


# --- an existing credential spec (Add-AksHciGMSACredentialSpec -credSpecFilePath) --------------------------------

AKS_HCI_PLUGIN = {"PortableCcgVersion": "1", "PluginGUID": "{E4781092-F116-4B79-B55E-28EB6A224E26}", "PluginInput": "SecretName=gmsa;SecretNamespace=web"}


def _new_credential_spec_file(**host_account_config):
    """A credential spec file as New-CredentialSpec writes it (UTF-8 with a byte order mark), optionally with a plugin."""
    spec = json.loads(CONTOSO_WEBAPP01_JSON)
    if host_account_config:
        spec["ActiveDirectoryConfig"]["HostAccountConfig"] = host_account_config
    return "\ufeff" + json.dumps(spec, indent=4)


def test_an_existing_spec_that_matches_ad_is_adopted_with_its_plugin():
    adopted = adopt_credspec(_new_credential_spec_file(**AKS_HCI_PLUGIN), CONTOSO, "WebApp01")
    assert adopted["ActiveDirectoryConfig"]["HostAccountConfig"] == AKS_HCI_PLUGIN
    plugin = {"plugin_guid": AKS_HCI_PLUGIN["PluginGUID"], "plugin_input": AKS_HCI_PLUGIN["PluginInput"]}
    assert adopted == build_credspec(CONTOSO, "WebApp01", host_account_config=plugin)
    assert plugin_of(adopted, "spec") == {"plugin_guid": AKS_HCI_PLUGIN["PluginGUID"], "plugin_input": AKS_HCI_PLUGIN["PluginInput"]}


def test_an_existing_spec_keeps_its_additional_accounts_and_may_get_another_plugin():
    spec = json.loads(_new_credential_spec_file().lstrip("\ufeff"))
    spec["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"].append({"Name": "Reports01", "Scope": "contoso.com"})
    plugin = {"plugin_guid": CCG_PLUGIN_GUIDS["azure_key_vault"], "plugin_input": "ObjectId=1;SecretUri=https://v/s"}
    adopted = adopt_credspec(spec, CONTOSO, "WebApp01", host_account_config=plugin)
    assert {"Name": "Reports01", "Scope": "contoso.com"} in adopted["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"]
    assert adopted["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginGUID"] == CCG_PLUGIN_GUIDS["azure_key_vault"]


@pytest.mark.parametrize(
    "document, account, message",
    [
        ("not json", "WebApp01", "spec: is not JSON"),
        ({"CmsPlugins": ["ActiveDirectory"]}, "WebApp01", "spec: is not a credential spec"),
        (
            _new_credential_spec_file(),
            "Billing01",
            "spec: does not match the gMSA and its domain: DomainJoinConfig.MachineAccountName is 'WebApp01', expected 'Billing01'",
        ),
        (_new_credential_spec_file().replace("2126729477", "1111111111"), "WebApp01", "DomainJoinConfig.Sid is 'S-1-5-21-1111111111-"),
        # The placeholder of the collection's examples: not a CLSID, so refused before anything changes.
        (_new_credential_spec_file(PortableCcgVersion="1", PluginGUID="{REPLACE-WITH-THE-PLUGIN-CLSID}", PluginInput="x"), "WebApp01",
         "spec.host_account_config.plugin_guid: '{REPLACE-WITH-THE-PLUGIN-CLSID}' is not a GUID"),
    ],
)
def test_an_existing_spec_that_does_not_match_is_refused_naming_what_differs(document, account, message):
    with pytest.raises(ValidationError) as error:
        adopt_credspec(document, CONTOSO, account)
    assert message in str(error.value)
