# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Hostile input, one table: every value is refused by the module, naming the field, before the domain or the
cluster is contacted; or it is carried exactly as data.

tests/integration/test_hostile_input.py runs a selection through the real modules on the lab, on both domain
transports, and checks that nothing was created and nothing executed.
"""

import base64
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_account, gmsa_credspec, gmsa_domain_info, gmsa_identity

CONNECTION = dict(domain_server="dc01.contoso.com", domain_username="CONTOSO\\admin", domain_password="admin-secret")
DOMAIN = {
    "dns_name": "contoso.com",
    "netbios_name": "CONTOSO",
    "sid": "S-1-5-21-2126449477-2524075714-3094792973",
    "guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
}
IDENTITY = {"username": "gmsa-portable", "password": "Pa55-w0rd!"}
PLUGIN_GUID = "{6A4C4B4E-1D7F-4A4B-9C7E-3F1B2C3D4E5F}"
# Passwords and plugin input that a shell, PowerShell or an LDAP filter would interpret; they must pass as data.
DATA_VALUES = ["P'a\"ss$(whoami)`id`;|&<>", "$env:USERNAME -and 1", "*)(cn=*\\00", "Pässwörd-€-密码"]


def _account(**entry):
    return ("gmsa_account", dict(accounts=[dict({"name": "WebApp01"}, **entry)]))


def _identity(**params):
    return ("gmsa_identity", dict({"name": "gmsa-portable", "password": "Identity-Pa55"}, **params))


def _credspec(entry=None, **params):
    return ("gmsa_credspec", dict({"domain": DOMAIN, "credspecs": [dict({"account_name": "WebApp01"}, **(entry or {}))]}, **params))


def _plugin(guid=PLUGIN_GUID, plugin_input="x"):
    return {"host_account_config": {"plugin_guid": guid, "plugin_input": plugin_input}}


# (module and its arguments, the field the error must name)
REFUSED = [
    # gMSA names: refused outright, or because the host name and SPNs derived from them would be invalid.
    (_account(name="Web'App"), "accounts[0].name: \"Web'App\" cannot be the host name"),
    (_account(name="Web`App"), "accounts[0].name: 'Web`App' cannot be the host name"),
    (_account(name="a$(whoami)"), "accounts[0].name: 'a$(whoami)' cannot be the host name"),
    (_account(name="web_app"), "accounts[0].name: 'web_app' cannot be the host name"),
    (_account(name="Wébapp"), "accounts[0].name: 'Wébapp' cannot be the host name"),
    (_account(name="a;whoami"), "accounts[0].name: 'a;whoami' contains ';'"),
    (_account(name="a|b"), "accounts[0].name: 'a|b' contains '|'"),
    (_account(name='x"y'), "accounts[0].name: 'x\"y' contains '\"'"),
    (_account(name="*"), "accounts[0].name: '*' contains '*'"),
    (_account(name="a\nb"), "accounts[0].name: 'a\\nb' contains '\\n'"),
    (_account(name="web app"), "accounts[0].name: 'web app' contains ' '"),
    (_account(name="ThisNameIsTooLong"), "accounts[0].name: 'ThisNameIsTooLong' is 17 characters"),
    (_account(name="$"), "accounts[0].name: '$' has nothing before the '$'"),
    (_account(name="..."), "accounts[0].name: '...' consists of periods only"),
    (("gmsa_domain_info", dict(accounts=["x;y"])), "accounts[0]: 'x;y' contains ';'"),
    (_credspec({"account_name": "a\u0000b"}), "credspecs[0].account_name: "),
    # SPNs
    (_account(spn={"add": ["host/a$(whoami)"]}), "accounts[0].spn.add[0]: host of SPN 'host/a$(whoami)'"),
    (_account(spn={"set": ["HTTP/web01 ;rm -rf /"]}), "accounts[0].spn.set[0]: 'HTTP/web01 ;rm -rf /' contains whitespace"),
    (_account(spn={"add": ["host/web01'"]}), "accounts[0].spn.add[0]: host of SPN \"host/web01'\""),
    (_account(spn={"add": ["host/web01:99999"]}), "accounts[0].spn.add[0]: port 99999"),
    (_account(spn={"remove": ["host"]}), "accounts[0].spn.remove[0]: 'host' is not an SPN"),
    # DNS names
    (_account(dns_hostname="web_app.contoso.com"), "accounts[0].dns_hostname: label 'web_app'"),
    (_account(dns_hostname="-web.contoso.com"), "accounts[0].dns_hostname: label '-web'"),
    (_account(dns_hostname="web..contoso.com"), "accounts[0].dns_hostname: 'web..contoso.com' has an empty label"),
    (_account(dns_hostname="$(whoami).contoso.com"), "accounts[0].dns_hostname: label '$(whoami)'"),
    (_account(dns_hostname="a" * 64 + ".contoso.com"), "accounts[0].dns_hostname: label 'aaaa"),
    (_credspec({"domain": dict(DOMAIN, dns_name="contoso.com;id")}), "credspecs[0].domain.dns_name: label 'com;id'"),
    # OU paths
    (_account(path="not a dn"), "accounts[0].path: 'not a dn' is not a distinguished name"),
    (_account(path="OU=gMSA;DC=contoso"), "accounts[0].path: 'OU=gMSA;DC=contoso' is not a distinguished name"),
    (_account(path="OU=a,\nDC=contoso"), "accounts[0].path: 'OU=a,\\nDC=contoso' contains control characters"),
    (_identity(path="OU=x,DC=contoso,"), "path: 'OU=x,DC=contoso,' is not a distinguished name"),
    (_identity(groups_path="CN=a\"b,DC=contoso"), "groups_path: 'CN=a\"b,DC=contoso' is not a distinguished name"),
    # group and user names, principals
    (_identity(groups={"add": ['grp"; Remove-ADGroup x']}), "groups.add[0]: 'grp\"; Remove-ADGroup x' contains"),
    (_identity(groups={"set": ["OU=x)(cn=*"]}), None),  # a valid DN: looked up as data (see the integration test)
    (_account(allowed_to_retrieve_password={"add": ["a*"]}), "accounts[0].allowed_to_retrieve_password.add[0]: 'a*' contains '*'"),
    (_identity(name="x');Remove-ADUser('"), "name: \"x');Remove-ADUser('\" contains ';'"),
    (_identity(name="user*"), "name: 'user*' contains '*'"),
    (_identity(name="twentyone-characters"), None),  # exactly 20: accepted
    (_identity(name="twentyone-characters1"), "name: 'twentyone-characters1' is 21 characters"),
    (_identity(name=" admin"), "name: ' admin' starts or ends with whitespace"),
    (_credspec(identity={"username": "a@b", "password": "x"}), "identity.username: 'a@b' contains '@'"),
    (_credspec({"identity": {"username": "u", "password": "x", "domain": "contoso.com|id"}}), "credspecs[0].identity.domain: "),
    # Kubernetes names
    (_credspec({"name": "Web'App"}), "credspecs[0].name: \"Web'App\" is not a lowercase RFC 1123 subdomain"),
    (_credspec({"name": "web/../x"}), "credspecs[0].name: 'web/../x' is not a lowercase RFC 1123 subdomain"),
    (_credspec({"service_accounts": [{"name": "web", "namespace": "kube-system;rm"}]}), "credspecs[0].service_accounts[0].namespace: "),
    (_credspec({"service_accounts": [{"name": "web", "namespace": "Web"}]}), "credspecs[0].service_accounts[0].namespace: "),
    (_credspec({"service_accounts": [{"name": "$(id)", "namespace": "web"}]}), "credspecs[0].service_accounts[0].name: "),
    (_credspec({"cluster_role_name": "system:auth-delegator"}), "credspecs[0].cluster_role_name: 'system:auth-delegator'"),
    (_credspec({"identity_secret": {"name": "../../etc"}}), "credspecs[0].identity_secret.name: '../../etc'"),
    (_credspec({"identity_secret": {"namespaces": ["a b"]}}), "credspecs[0].identity_secret.namespaces[0]: 'a b'"),
    # CCG plugin GUID and input
    (_credspec(_plugin(guid=PLUGIN_GUID + "'")), "credspecs[0].host_account_config.plugin_guid: "),
    (_credspec(_plugin(guid=PLUGIN_GUID.strip("{}"))), "credspecs[0].host_account_config.plugin_guid: "),
    (_credspec(_plugin(guid="{$(whoami)}")), "credspecs[0].host_account_config.plugin_guid: "),
    (_credspec(_plugin(plugin_input="${whoami}")), "credspecs[0].host_account_config.plugin_input: unknown placeholder ${whoami}"),
    (_credspec(group="Team A", prune=True), "group: 'Team A' is not a lowercase RFC 1123 label"),
    # file paths
    (_credspec({"json_path": "/nonexistent-dir/x.json"}), "credspecs[0].json_path: the directory /nonexistent-dir does not exist"),
    (_credspec({"json_path": "/tmp"}), "credspecs[0].json_path: /tmp is a directory"),
    (_credspec({"json_path": "/tmp/a\nb.json"}), "credspecs[0].json_path: '/tmp/a\\nb.json' contains control characters"),
]
MODULES = {"gmsa_account": gmsa_account, "gmsa_identity": gmsa_identity, "gmsa_domain_info": gmsa_domain_info, "gmsa_credspec": gmsa_credspec}


@pytest.fixture
def run_untouched(monkeypatch, capsys):
    """Run a module with ``args``; reaching for the domain or the cluster fails the test with ``unreachable``."""

    def unreachable(*_args, **_kwargs):
        raise AssertionError("unreachable: the module went on to the domain or the cluster")

    def run_module(name, args):
        module = MODULES[name]
        monkeypatch.setattr(module, "Cluster" if name == "gmsa_credspec" else "open_domain_client", unreachable)
        module_args = dict(args, **CONNECTION) if name != "gmsa_credspec" else args
        with patch_module_args(module_args), pytest.raises((SystemExit, AssertionError)) as info:
            module.main()
        if info.type is AssertionError:
            return None
        return json.loads(capsys.readouterr().out)

    return run_module


def test_the_table_covers_forty_values_across_every_kind_of_field():
    assert len([case for case in REFUSED if case[1]]) >= 40


@pytest.mark.parametrize(("module_args", "message"), REFUSED, ids=[f"{case[0][0]}-{index}" for index, case in enumerate(REFUSED)])
def test_hostile_value_is_refused_naming_the_field_before_anything_is_contacted(module_args, message, run_untouched):
    result = run_untouched(*module_args)
    if message is None:
        assert result is None, "a valid value must get as far as the domain"
        return
    assert result is not None, f"went on to the domain or cluster, expected: {message}"
    assert result["failed"]
    assert message in result["msg"]


def test_a_gmsa_name_that_is_no_host_name_works_with_an_explicit_dns_hostname(tmp_path):
    facts = gmsa_account.DomainFacts("DC=contoso,DC=com", "contoso.com", "contoso.com", "CONTOSO", DOMAIN["sid"], DOMAIN["guid"])
    request = dict(
        {option: None for option in gmsa_account.ACCOUNT_OPTIONS}, name="Web'App", state="present", dns_hostname="webapp.contoso.com", recreate=False
    )
    gmsa_account.validate_accounts([request])
    plan = gmsa_account.AccountPlan("accounts[0]", request, None, {}, facts, str(tmp_path))
    assert plan.desired.dns_host_name == "webapp.contoso.com"
    assert plan.desired.spns == ("host/webapp", "host/webapp.contoso.com")


def test_absent_accepts_a_name_that_is_no_host_name_so_old_accounts_can_be_removed():
    request = dict({option: None for option in gmsa_account.ACCOUNT_OPTIONS}, name="Web'App", state="absent", recreate=False)
    gmsa_account.validate_accounts([request])
    assert request["name"] == "Web'App"


@pytest.mark.parametrize("value", DATA_VALUES)
def test_passwords_and_plugin_input_are_carried_exactly_as_data(value):
    params = {"state": "present", "domain": DOMAIN, "identity": dict(IDENTITY, password=value, domain=None), "group": None}
    entry = {
        "account_name": "WebApp01",
        "name": None,
        "domain": None,
        "additional_accounts": [],
        "host_account_config": {"plugin": None, "plugin_guid": PLUGIN_GUID, "plugin_input": value + ";${secret_name}"},
        "service_accounts": [{"name": "web", "namespace": "web"}],
        "cluster_role_name": None,
        "identity": None,
        "identity_secret": {"name": "gmsa-identity", "namespaces": None},
        "json_path": None,
        "spec": None,
        "spec_file": None,
    }
    plan = gmsa_credspec.plan_entry(entry, 0, params)
    assert plan["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"] == value + ";gmsa-identity"
    secret = next(obj for obj in gmsa_credspec.manifests(plan) if obj["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == value


def test_a_json_path_with_shell_syntax_is_just_a_file_name(tmp_path):
    path = str(tmp_path / "$(touch pwned)`id`.json")
    assert gmsa_credspec.validate_json_path(path, "json_path") == path
