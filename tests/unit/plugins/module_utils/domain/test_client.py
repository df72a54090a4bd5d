# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DOMAIN_CONNECTION_ARGUMENT_SPEC,
    ConnectionSettings,
    DomainError,
    GmsaSettings,
    apply_list_changes,
    encryption_type_names,
    encryption_types_value,
    gmsa_attribute_changes,
    gmsa_from_attributes,
    list_option_values,
    principal_lookup_attribute,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._security_descriptor import decode_security_descriptor, encode_group_msa_membership

READER = "S-1-5-21-1004336348-1177238915-682003330-1105"
OTHER_READER = "S-1-5-21-1004336348-1177238915-682003330-1106"

SETTINGS = GmsaSettings(
    dns_host_name="web.contoso.com",
    spns=("host/web", "host/web.contoso.com"),
    password_readers=(READER,),
    encryption_types=0x18,
    description=None,
    enabled=True,
)


def connection_params(**overrides) -> dict:
    params = {name: spec.get("default") for name, spec in DOMAIN_CONNECTION_ARGUMENT_SPEC.items()}
    params.update(domain_server="dc01.contoso.com", domain_username="CONTOSO\\admin", domain_password="secret")
    params.update(overrides)
    return params


class TestApplyListChanges:
    def test_no_option_keeps_the_current_list(self):
        assert apply_list_changes(["a", "b"], None) == ["a", "b"]

    def test_add_appends_only_what_is_missing_ignoring_case(self):
        assert apply_list_changes(["host/WEB"], {"add": ["host/web", "HTTP/web"], "remove": None, "set": None}) == ["host/WEB", "HTTP/web"]

    def test_remove_ignores_case_and_absent_entries(self):
        assert apply_list_changes(["a", "B"], {"add": None, "remove": ["b", "c"], "set": None}) == ["a"]

    def test_set_replaces_then_add_and_remove_apply(self):
        assert apply_list_changes(["old"], {"set": ["x", "y"], "add": ["z"], "remove": ["y"]}) == ["x", "z"]

    def test_empty_set_clears(self):
        assert apply_list_changes(["a"], {"set": [], "add": None, "remove": None}) == []

    def test_custom_key(self):
        assert apply_list_changes(["s-1-5-32-544"], {"add": ["S-1-5-32-544"], "remove": None, "set": None}, key=str.upper) == ["s-1-5-32-544"]


def test_list_option_values_name_each_field():
    assert list_option_values({"set": ["a"], "add": ["b", "c"], "remove": None}) == [("set[0]", "a"), ("add[0]", "b"), ("add[1]", "c")]
    assert list_option_values(None) == []


@pytest.mark.parametrize(
    "identity, attribute",
    [
        ("S-1-5-21-1-2-3-1105", "objectSid"),
        ("s-1-5-32-544", "objectSid"),
        ("CN=Web Hosts,OU=Groups,DC=contoso,DC=com", "distinguishedName"),
        ("web-hosts", "sAMAccountName"),
        ("WEB01$", "sAMAccountName"),
        ("S-1-oops", "sAMAccountName"),
    ],
)
def test_principal_lookup_attribute(identity, attribute):
    assert principal_lookup_attribute(identity) == attribute


def test_encryption_types_round_trip():
    assert encryption_types_value(["aes128", "aes256"]) == 0x18
    assert encryption_type_names(0x1C) == ["rc4", "aes128", "aes256"]
    assert encryption_type_names(0) == []


class TestGmsaAttributeChanges:
    def test_creation_writes_every_attribute_that_has_a_value(self):
        replace, clear = gmsa_attribute_changes(None, SETTINGS)
        assert clear == []
        assert replace["dNSHostName"] == "web.contoso.com"
        assert replace["servicePrincipalName"] == ["host/web", "host/web.contoso.com"]
        assert replace["msDS-SupportedEncryptionTypes"] == 0x18
        assert decode_security_descriptor(replace["msDS-GroupMSAMembership"]).password_readers == (READER,)
        assert "description" not in replace

    def test_same_settings_change_nothing(self):
        assert gmsa_attribute_changes(SETTINGS, SETTINGS) == ({}, [])

    def test_case_and_order_are_no_change(self):
        desired = GmsaSettings(**{**SETTINGS.__dict__, "dns_host_name": "WEB.contoso.com", "spns": ("HOST/web.contoso.com", "host/WEB")})
        assert gmsa_attribute_changes(SETTINGS, desired) == ({}, [])

    def test_changed_fields_only(self):
        desired = GmsaSettings(**{**SETTINGS.__dict__, "password_readers": (READER, OTHER_READER), "description": "web"})
        replace, clear = gmsa_attribute_changes(SETTINGS, desired)
        assert set(replace) == {"msDS-GroupMSAMembership", "description"}
        assert decode_security_descriptor(replace["msDS-GroupMSAMembership"]).password_readers == (READER, OTHER_READER)
        assert clear == []

    def test_emptied_values_are_cleared(self):
        current = GmsaSettings(**{**SETTINGS.__dict__, "description": "old"})
        desired = GmsaSettings(**{**SETTINGS.__dict__, "spns": (), "description": None})
        assert gmsa_attribute_changes(current, desired) == ({}, ["servicePrincipalName", "description"])

    def test_no_reader_left_writes_an_empty_dacl(self):
        desired = GmsaSettings(**{**SETTINGS.__dict__, "password_readers": ()})
        replace, _clear = gmsa_attribute_changes(SETTINGS, desired)
        assert decode_security_descriptor(replace["msDS-GroupMSAMembership"]).dacl == ()


def test_gmsa_from_attributes_decodes_the_membership_and_defaults():
    account = gmsa_from_attributes({
        "name": "web",
        "sam_account_name": "web$",
        "distinguished_name": "CN=web,CN=Managed Service Accounts,DC=contoso,DC=com",
        "sid": "S-1-5-21-1-2-3-1110",
        "object_guid": "5f1e3b47-1c2c-4d8e-9b47-2d6f3a2b9f10",
        "password_interval_days": None,
        "dns_host_name": None,
        "spns": ["host/web.contoso.com", "host/WEB"],
        "membership": encode_group_msa_membership([READER]),
        "encryption_types": None,
        "description": "",
        "enabled": True,
    })
    assert account.password_interval_days == 30
    assert account.settings == GmsaSettings(
        dns_host_name="", spns=("host/WEB", "host/web.contoso.com"), password_readers=(READER,), encryption_types=0, description=None, enabled=True
    )


class TestConnectionSettings:
    @pytest.mark.parametrize(
        "transport, tls, port",
        [("winrm", "none", 5985), ("winrm", "tls", 5986), ("ldap", "none", 389), ("ldap", "tls", 636), ("ldap", "starttls", 389)],
    )
    def test_default_ports(self, transport, tls, port):
        assert ConnectionSettings.from_params(connection_params(domain_transport=transport, domain_tls=tls)).port == port

    def test_explicit_port_wins(self):
        assert ConnectionSettings.from_params(connection_params(domain_port=15985)).port == 15985

    @pytest.mark.parametrize(
        "overrides, field",
        [
            ({"domain_transport": "ldap", "domain_auth": "basic"}, "domain_auth: basic sends the password in clear text"),
            ({"domain_transport": "winrm", "domain_auth": "basic", "domain_tls": "tls"}, "domain_auth: basic authenticates only local accounts"),
            ({"domain_transport": "winrm", "domain_tls": "starttls"}, "domain_tls: starttls"),
            ({"domain_transport": "ldap", "domain_auth": "credssp"}, "domain_auth: credssp"),
            ({"domain_password": None}, "domain_username and domain_password"),
            ({"domain_timeout": 0}, "domain_timeout"),
            ({"domain_transport": "ldap", "domain_proxy": "http://proxy:3128"}, "domain_proxy: applies to the winrm transport only"),
            ({"domain_transport": "ldap", "domain_kerberos_hostname": "dc01"}, "domain_kerberos_hostname: applies to the winrm transport only"),
            ({"domain_kerberos_delegation": True}, "domain_kerberos_delegation: needs domain_auth kerberos"),
        ],
    )
    def test_refused_combinations_name_the_option(self, overrides, field):
        with pytest.raises(DomainError, match=field):
            ConnectionSettings.from_params(connection_params(**overrides))

    def test_basic_over_tls_and_kerberos_without_password_are_accepted(self):
        assert ConnectionSettings.from_params(connection_params(domain_transport="ldap", domain_auth="basic", domain_tls="tls")).auth == "basic"
        assert ConnectionSettings.from_params(connection_params(domain_auth="kerberos", domain_username=None, domain_password=None)).auth == "kerberos"


class TestWarnings:
    @pytest.mark.parametrize(
        "overrides, warning",
        [
            ({"domain_auth": "ntlm", "domain_tls": "none"}, "domain_auth ntlm without domain_tls"),
            ({"domain_auth": "kerberos", "domain_tls": "tls", "domain_validate_certs": False}, "domain_validate_certs is false"),
            ({"domain_transport": "ldap", "domain_auth": "basic", "domain_tls": "tls"}, "domain_auth basic sends the password itself"),
        ],
    )
    def test_weak_settings_are_named(self, overrides, warning):
        warnings = ConnectionSettings.from_params(connection_params(**overrides)).warnings
        assert len(warnings) == 1 and warnings[0].startswith(warning)

    @pytest.mark.parametrize("transport", ["winrm", "ldap"])
    def test_kerberos_over_tls_draws_no_warning(self, transport):
        settings = ConnectionSettings.from_params(connection_params(domain_transport=transport, domain_auth="kerberos", domain_tls="tls"))
        assert settings.warnings == []


def test_every_connection_option_has_an_environment_fallback():
    for name, spec in DOMAIN_CONNECTION_ARGUMENT_SPEC.items():
        assert spec["fallback"][1], name
    assert DOMAIN_CONNECTION_ARGUMENT_SPEC["domain_password"]["no_log"] is True
