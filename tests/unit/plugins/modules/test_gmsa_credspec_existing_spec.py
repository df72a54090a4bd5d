# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_credspec with a credential spec of the user's (spec, spec_file) and the plugin of a credspec in the cluster
(host_account_config.from_credspec): Add-AksHciGMSACredentialSpec -credSpecFilePath, and the AKS on Azure Stack HCI
plugin CLSID without the AksHci module. The cluster is faked at its boundary (Cluster.get)."""

import json

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.wincontainers.gmsa.plugins.module_utils._credspec import build_credspec
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_credspec


DOMAIN = {
    "dns_name": "contoso.com",
    "netbios_name": "CONTOSO",
    "sid": "S-1-5-21-2126449477-2524075714-3094792973",
    "guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
}
AKS_HCI_PLUGIN = {"PortableCcgVersion": "1", "PluginGUID": "{E4781092-F116-4B79-B55E-28EB6A224E26}", "PluginInput": "SecretName=gmsa;SecretNamespace=web"}


def _entry(**values):
    """A credspecs entry as the module's argument spec fills it in."""
    result = ArgumentSpecValidator(gmsa_credspec.ARGUMENT_SPEC["credspecs"]["options"]).validate(values)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def _plan(**entry):
    return gmsa_credspec.plan_entry(_entry(**entry), 0, {"state": "present", "domain": DOMAIN, "identity": None, "group": None})


def _file_spec(**host_account_config):
    spec = build_credspec(dict(DOMAIN, dns_tree_name=DOMAIN["dns_name"]), "WebApp01")
    if host_account_config:
        spec["ActiveDirectoryConfig"]["HostAccountConfig"] = host_account_config
    return spec


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_new_credential_spec_file_is_used_with_its_plugin(tmp_path, encoding):
    path = tmp_path / "webapp01.json"
    path.write_bytes(json.dumps(_file_spec(**AKS_HCI_PLUGIN), indent=4).encode(encoding))
    plan = _plan(account_name="WebApp01", spec_file=str(path))
    assert plan["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"] == AKS_HCI_PLUGIN


def test_an_inline_spec_for_another_gmsa_is_refused_before_the_cluster_is_reached(run_offline):
    result = run_offline(gmsa_credspec, {
        "domain": DOMAIN,
        "credspecs": [{"account_name": "Billing01", "spec": json.dumps(_file_spec()), "service_accounts": [{"name": "b", "namespace": "b"}]}],
    })
    assert result["failed"]
    assert "credspecs[0].spec: does not match the gMSA and its domain: DomainJoinConfig.MachineAccountName is 'WebApp01', expected 'Billing01'" in result["msg"]


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"spec": _file_spec(), "spec_file": "/x.json"}, "credspecs[0].spec: and spec_file are mutually exclusive"),
        (
            {"spec": _file_spec(), "additional_accounts": [{"name": "Other01", "domain": None}]},
            "credspecs[0].additional_accounts: comes from the credential spec",
        ),
        ({"spec_file": "/nonexistent/webapp01.json"}, "credspecs[0].spec_file: /nonexistent/webapp01.json cannot be read"),
    ],
)
def test_a_spec_given_twice_or_unreadable_is_refused(entry, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _plan(account_name="WebApp01", **entry)


class FakeCluster:
    """Cluster.get of a cluster holding the given GMSACredentialSpec objects (the only call from_credspec makes)."""

    objects: dict = {}

    def __init__(self, module):
        self.module = module

    def get(self, kind, name, namespace=None):
        assert kind == "GMSACredentialSpec" and namespace is None
        return self.objects.get(name)


def _from_credspec(monkeypatch, live, **config):
    monkeypatch.setattr(FakeCluster, "objects", live)
    monkeypatch.setattr(gmsa_credspec, "Cluster", FakeCluster)
    entry = _entry(account_name="WebApp01", host_account_config=config)
    return gmsa_credspec.with_plugins_from_cluster(None, [entry])[0]["host_account_config"]


def test_the_plugin_of_a_credspec_in_the_cluster_is_taken(monkeypatch):
    live = {"akshci": {"credspec": _file_spec(**AKS_HCI_PLUGIN)}}
    config = _from_credspec(monkeypatch, live, from_credspec="akshci")
    assert (config["plugin_guid"], config["plugin_input"], config["from_credspec"]) == (AKS_HCI_PLUGIN["PluginGUID"], AKS_HCI_PLUGIN["PluginInput"], None)
    # An input of the user's wins; the CLSID still comes from the cluster.
    config = _from_credspec(monkeypatch, live, from_credspec="akshci", plugin_input="SecretName=${secret_name}")
    assert (config["plugin_guid"], config["plugin_input"]) == (AKS_HCI_PLUGIN["PluginGUID"], "SecretName=${secret_name}")


@pytest.mark.parametrize(
    "live, message",
    [
        ({}, "there is no GMSACredentialSpec akshci in the cluster"),
        ({"akshci": {"credspec": _file_spec()}}, "GMSACredentialSpec akshci has no HostAccountConfig"),
        ({"akshci": {"credspec": _file_spec(PluginGUID="{not-a-clsid}", PluginInput="x")}}, "(akshci's PluginGUID): '{not-a-clsid}' is not a GUID"),
    ],
)
def test_a_credspec_without_a_usable_plugin_is_refused(monkeypatch, live, message):
    with pytest.raises(ValidationError) as error:
        _from_credspec(monkeypatch, live, from_credspec="akshci")
    assert str(error.value).startswith("credspecs[0].host_account_config.from_credspec") and message in str(error.value)


def test_the_placeholder_clsid_of_the_examples_is_refused(run_offline):
    """The first example, with its variables filled in, fails on its placeholder CLSID before reaching the cluster."""
    task = yaml.safe_load(gmsa_credspec.EXAMPLES)[0]["wincontainers.gmsa.gmsa_credspec"]
    args = dict(task, domain=DOMAIN, identity={"username": "gmsa-portable", "password": "Pa55-w0rd!"})
    result = run_offline(gmsa_credspec, args)
    assert "credspecs[0].host_account_config.plugin_guid: '{REPLACE-WITH-YOUR-PLUGIN-CLSID}' is not a GUID" in result["msg"]


def test_a_credspec_no_pod_may_use_is_never_made_silently(monkeypatch, run_offline):
    """Without service_accounts the module warns (the cmdlet would bind default/default); here it stops at the cluster."""
    warnings = []
    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.warn", lambda module, message: warnings.append(message))
    with pytest.raises(AssertionError, match="reached for the cluster"):
        run_offline(gmsa_credspec, {"domain": DOMAIN, "credspecs": [{"account_name": "WebApp01"}]})
    assert warnings == [
        "credspecs[0]: no service_accounts, so no pod may use GMSACredentialSpec webapp01; "
        "name them (Add-AksHciGMSACredentialSpec binds the service account default of namespace default)"
    ]
