# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    credspec_name_from_account,
    format_sid,
    parse_sid,
    validate_distinguished_name,
    validate_dns_name,
    validate_domain_sid,
    validate_gmsa_name,
    validate_guid,
    validate_host_name_source,
    validate_k8s_label,
    validate_k8s_subdomain,
    validate_netbios_domain_name,
    validate_plugin_guid,
    validate_principal,
    validate_sid,
    validate_spn,
    validate_user_name,
)


def test_error_names_field_and_nests_under_a_prefix():
    error = ValidationError("name", "is wrong")
    assert str(error) == "name: is wrong"
    nested = error.within("accounts[2]")
    assert (nested.field, nested.message, str(nested)) == ("accounts[2].name", "is wrong", "accounts[2].name: is wrong")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("WebApp01", "WebApp01"),
        ("WebApp01$", "WebApp01"),
        ("a", "a"),
        ("-svc.web_01", "-svc.web_01"),
        ("fifteen-chars-1", "fifteen-chars-1"),
        ("fifteen-chars-1$", "fifteen-chars-1"),
    ],
)
def test_gmsa_name_valid(value, expected):
    assert validate_gmsa_name(value, "name") == expected


def test_gmsa_name_too_long_message():
    with pytest.raises(ValidationError) as info:
        validate_gmsa_name("web-app-production01", "accounts[2].name")
    assert str(info.value) == (
        "accounts[2].name: 'web-app-production01' is 20 characters; a gMSA name (sAMAccountName without $) has at most 15"
    )


@pytest.mark.parametrize(
    "value, rule",
    [
        ("", "must not be empty"),
        ("$", "nothing before the '$'"),
        ("sixteen-chars-01", "is 16 characters"),
        ("web app", "contains ' '"),
        ("web@app", "contains '@'"),
        ('a"/\\[]:;|=,', "contains '\",/:;=[\\\\]|'"),
        ("a+*?<>@", "contains '*+<>?@'"),
        ("web\tapp", "contains '\\t'"),
        ("...", "periods only"),
        (15, "must be a string, got int"),
        (None, "must be a string, got NoneType"),
    ],
)
def test_gmsa_name_invalid(value, rule):
    with pytest.raises(ValidationError, match="^account_name: ") as info:
        validate_gmsa_name(value, "account_name")
    assert rule in info.value.message


@pytest.mark.parametrize("value", ["CONTOSO", "DEV-CONTOSO", "A", "FIFTEENCHARSXYZ", "NT4.LEGACY"])
def test_netbios_domain_name_valid(value):
    assert validate_netbios_domain_name(value, "domain.netbios_name") == value


@pytest.mark.parametrize(
    "value, rule",
    [
        ("SIXTEENCHARSXYZW", "is 16 characters"),
        (".CONTOSO", "starts with a period"),
        ("DEV/CONTOSO", "contains '/'"),
        ("MY DOMAIN", "contains ' '"),
        ("", "must not be empty"),
    ],
)
def test_netbios_domain_name_invalid(value, rule):
    with pytest.raises(ValidationError, match="^domain.netbios_name: ") as info:
        validate_netbios_domain_name(value, "domain.netbios_name")
    assert rule in info.value.message


@pytest.mark.parametrize(
    "value",
    ["contoso.com", "web01", "Web-01.Dev.Contoso.COM", "a" * 63 + ".com", ".".join(["a" * 63] * 3) + "." + "b" * 61, "1.2.3.example"],
)
def test_dns_name_valid(value):
    assert validate_dns_name(value, "dns_host_name") == value


@pytest.mark.parametrize(
    "value, rule",
    [
        ("", "must not be empty"),
        ("contoso.com.", "ends with '.'"),
        (".contoso.com", "empty label"),
        ("web..contoso.com", "empty label"),
        ("a" * 64 + ".com", "is 64 characters; a DNS label has at most 63"),
        (".".join(["a" * 63] * 4), "is 255 characters; a DNS name has at most 253"),
        ("web_01.contoso.com", "label 'web_01'"),
        ("-web.contoso.com", "label '-web'"),
        ("web-.contoso.com", "label 'web-'"),
        ("web 01.contoso.com", "label 'web 01'"),
    ],
)
def test_dns_name_invalid(value, rule):
    with pytest.raises(ValidationError, match="^dns_host_name: ") as info:
        validate_dns_name(value, "dns_host_name")
    assert rule in info.value.message


@pytest.mark.parametrize(
    "value",
    ["host/web01", "host/web01.contoso.com", "HTTP/web01.contoso.com:8080", "MSSQLSvc/sql01.contoso.com:MSSQLSERVER", "ldap/dc01.contoso.com/contoso.com"],
)
def test_spn_valid(value):
    assert validate_spn(value, "spns[0]") == value


@pytest.mark.parametrize(
    "value, rule",
    [
        ("host/web 01", "contains whitespace"),
        (" host/web01", "contains whitespace"),
        ("host", "is not an SPN"),
        ("host/", "is not an SPN"),
        ("/web01", "is not an SPN"),
        ("host/:80", "is not an SPN"),
        ("host/web_01", "host of SPN 'host/web_01': label 'web_01'"),
        ("HTTP/web01:0", "port 0 of SPN 'HTTP/web01:0' is outside 1-65535"),
        ("HTTP/web01:65536", "port 65536"),
    ],
)
def test_spn_invalid(value, rule):
    with pytest.raises(ValidationError, match=r"^spns\[0\]: ") as info:
        validate_spn(value, "spns[0]")
    assert rule in info.value.message


@pytest.mark.parametrize("value", ["webapp01", "web-app.v1", "a", "0", "a" * 253])
def test_k8s_subdomain_valid(value):
    assert validate_k8s_subdomain(value, "credspec_name") == value


@pytest.mark.parametrize(
    "value, rule",
    [
        ("WebApp01", "not a lowercase RFC 1123 subdomain"),
        ("web_app", "not a lowercase RFC 1123 subdomain"),
        ("-web", "not a lowercase RFC 1123 subdomain"),
        ("web.", "not a lowercase RFC 1123 subdomain"),
        ("a" * 254, "is 254 characters; a Kubernetes object name has at most 253"),
        ("", "must not be empty"),
    ],
)
def test_k8s_subdomain_invalid(value, rule):
    with pytest.raises(ValidationError, match="^credspec_name: ") as info:
        validate_k8s_subdomain(value, "credspec_name")
    assert rule in info.value.message


@pytest.mark.parametrize("value", ["default", "web-apps", "a" * 63])
def test_k8s_label_valid(value):
    assert validate_k8s_label(value, "namespace") == value


@pytest.mark.parametrize(
    "value, rule",
    [
        ("web.apps", "not a lowercase RFC 1123 label"),
        ("Web", "not a lowercase RFC 1123 label"),
        ("web-", "not a lowercase RFC 1123 label"),
        ("a" * 64, "is 64 characters; a namespace name (RFC 1123 label) has at most 63"),
    ],
)
def test_k8s_label_invalid(value, rule):
    with pytest.raises(ValidationError, match="^namespace: ") as info:
        validate_k8s_label(value, "namespace")
    assert rule in info.value.message


@pytest.mark.parametrize(
    "account, expected",
    [
        ("WebApp01", "webapp01"),
        ("WebApp01$", "webapp01"),
        ("Web_App.01$", "web-app-01"),
        ("web__app", "web-app"),
        ("_svc-web_", "svc-web"),
        ("-web-", "web"),
        ("Müller", "m-ller"),
    ],
)
def test_credspec_name_from_account(account, expected):
    derived = credspec_name_from_account(account, "name")
    assert derived == expected
    assert validate_k8s_label(derived, "derived") == derived


@pytest.mark.parametrize(
    "account, rule",
    [("-_-", "has no letter or digit"), ("web-app-production01", "is 20 characters"), ("web app", "contains ' '")],
)
def test_credspec_name_from_account_invalid(account, rule):
    with pytest.raises(ValidationError, match=r"^accounts\[0\].name: ") as info:
        credspec_name_from_account(account, "accounts[0].name")
    assert rule in info.value.message


@pytest.mark.parametrize(
    "value, parsed, canonical",
    [
        ("S-1-5-21-2126729477-2524075714-3094792973", (5, (21, 2126729477, 2524075714, 3094792973)), "S-1-5-21-2126729477-2524075714-3094792973"),
        ("S-1-5-32-544", (5, (32, 544)), "S-1-5-32-544"),
        ("s-1-1-0", (1, (0,)), "S-1-1-0"),
        ("S-1-5-021-4294967295", (5, (21, 4294967295)), "S-1-5-21-4294967295"),
        ("S-1-0x0000FFFFFFFF-1", (0xFFFFFFFF, (1,)), "S-1-4294967295-1"),
        ("S-1-0x000100000000-1", (2**32, (1,)), "S-1-0x000100000000-1"),
        ("S-1-5" + "-1" * 15, (5, (1,) * 15), "S-1-5" + "-1" * 15),
    ],
)
def test_sid_valid(value, parsed, canonical):
    assert parse_sid(value, "sid") == parsed
    assert format_sid(*parsed) == canonical
    assert validate_sid(value, "sid") == canonical


@pytest.mark.parametrize(
    "value, rule",
    [
        ("S-1-5", "is not a SID"),
        ("S-2-5-21", "is not a SID"),
        ("S-1-5-21-", "is not a SID"),
        ("S-1-5-21-abc", "is not a SID"),
        ("S-1-5 -21", "is not a SID"),
        ("S-1-5" + "-1" * 16, "is not a SID"),
        ("S-1-5-21-4294967296", "sub-authority above 2^32-1"),
        ("S-1-281474976710656-1", "identifier authority above 2^48-1"),
        ("", "must not be empty"),
    ],
)
def test_sid_invalid(value, rule):
    with pytest.raises(ValidationError, match="^principals.sid: ") as info:
        validate_sid(value, "principals.sid")
    assert rule in info.value.message


def test_domain_sid_valid():
    assert validate_domain_sid("S-1-5-21-1-2-3", "domain.sid") == "S-1-5-21-1-2-3"


def test_domain_sid_rejects_account_sid_and_names_the_domain_sid():
    with pytest.raises(ValidationError) as info:
        validate_domain_sid("S-1-5-21-1-2-3-1105", "domain.sid")
    assert str(info.value) == "domain.sid: 'S-1-5-21-1-2-3-1105' is the SID of an account (it ends with a RID); give the domain SID, 'S-1-5-21-1-2-3'"


@pytest.mark.parametrize("value", ["S-1-5-32-544", "S-1-5-21-1-2", "S-1-1-21-1-2-3", "S-1-5-22-1-2-3", "not-a-sid"])
def test_domain_sid_invalid(value):
    with pytest.raises(ValidationError, match="^domain.sid: "):
        validate_domain_sid(value, "domain.sid")


@pytest.mark.parametrize(
    "value",
    ["244818ae-87ca-4fcd-92ec-e79e5252348a", "244818AE-87CA-4FCD-92EC-E79E5252348A", "{244818ae-87ca-4fcd-92ec-e79e5252348A}"],
)
def test_guid_valid_is_lowered_without_braces(value):
    assert validate_guid(value, "domain.guid") == "244818ae-87ca-4fcd-92ec-e79e5252348a"


@pytest.mark.parametrize(
    "value",
    [
        "244818ae87ca4fcd92ece79e5252348a",
        "244818ae-87ca-4fcd-92ec-e79e5252348",
        "{244818ae-87ca-4fcd-92ec-e79e5252348a",
        "244818ae-87ca-4fcd-92ec-e79e5252348a}",
        "GDMA0342-266A-4D1P-831J-20990E82944F",
        "",
    ],
)
def test_guid_invalid(value):
    with pytest.raises(ValidationError, match="^domain.guid: "):
        validate_guid(value, "domain.guid")


@pytest.mark.parametrize("value", ["{CCC2A336-D7F3-4818-A213-272B7924213E}", "{859e1386-bdb4-49e8-85c7-3070b13920e1}"])
def test_plugin_guid_valid_is_kept_as_given(value):
    assert validate_plugin_guid(value, "plugin_guid") == value


def test_plugin_guid_without_braces():
    with pytest.raises(ValidationError) as info:
        validate_plugin_guid("CCC2A336-D7F3-4818-A213-272B7924213E", "host_account_config.plugin_guid")
    assert str(info.value) == (
        "host_account_config.plugin_guid: 'CCC2A336-D7F3-4818-A213-272B7924213E' needs braces; "
        "a CCG plugin GUID is written as a CLSID, '{CCC2A336-D7F3-4818-A213-272B7924213E}'"
    )


@pytest.mark.parametrize("value", ["{GDMA0342-266A-4D1P-831J-20990E82944F}", "{CCC2A336-D7F3-4818-A213}", "{}"])
def test_plugin_guid_invalid(value):
    with pytest.raises(ValidationError, match="^plugin_guid: .* is not a GUID"):
        validate_plugin_guid(value, "plugin_guid")


@pytest.mark.parametrize(
    "value",
    [
        "OU=gMSA,DC=contoso,DC=com",
        "CN=Smith\\, John,OU=Users,DC=contoso,DC=com",
        "OU=a, DC=b",
        "CN=x+UID=1,DC=c",
        "1.2.840.113556.1.4.1=#0101,DC=x",
        "OU=x)(cn=*,DC=y",
    ],
)
def test_distinguished_name_valid(value):
    assert validate_distinguished_name(value, "path") == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("contoso", "is not a distinguished name"),
        ("OU=a;DC=b", "is not a distinguished name"),
        ("OU=a,DC=b,", "is not a distinguished name"),
        ("OU=a,b", "is not a distinguished name"),
        ('CN=a"b', "is not a distinguished name"),
        ("OU=a\x00,DC=b", "contains control characters"),
        ("OU=a\r\nDC=b", "contains control characters"),
    ],
)
def test_distinguished_name_invalid(value, rule):
    with pytest.raises(ValidationError, match=rule) as info:
        validate_distinguished_name(value, "path")
    assert info.value.field == "path"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gmsa-portable", None),
        ("John Smith", None),
        ("a" * 20, None),
        ("a" * 21, "is 21 characters"),
        ("a@b", "contains '@'"),
        ("..", "periods and spaces only"),
    ],
)
def test_user_name(value, expected):
    if expected is None:
        assert validate_user_name(value, "name") == value
    else:
        with pytest.raises(ValidationError, match=expected):
            validate_user_name(value, "name")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("web-hosts", "web-hosts"),
        ("WEB01$", "WEB01$"),
        ("s-1-5-21-1-2-3-1105", "S-1-5-21-1-2-3-1105"),
        ("CN=Web Hosts,CN=Users,DC=contoso,DC=com", "CN=Web Hosts,CN=Users,DC=contoso,DC=com"),
    ],
)
def test_principal_valid(value, expected):
    assert validate_principal(value, "allowed") == expected


@pytest.mark.parametrize(("value", "rule"), [("a*", "contains '*'"), ("CN=a;b", "not a distinguished name"), ("x\ty", "contains '\\\\t'")])
def test_principal_invalid(value, rule):
    with pytest.raises(ValidationError, match=rule):
        validate_principal(value, "allowed")


@pytest.mark.parametrize("name", ["WebApp01", "web-01", "Web.App"])
def test_host_name_source_valid(name):
    assert validate_host_name_source(name, "name") == name


@pytest.mark.parametrize("name", ["Web'App", "Web`App", "a$(whoami)", "web_app", "-web", "Wébapp"])
def test_host_name_source_refuses_what_makes_an_invalid_dns_host_name(name):
    with pytest.raises(ValidationError, match="cannot be the host name in the account's dNSHostName and SPNs.*give a valid dns_hostname"):
        validate_host_name_source(name, "accounts[0].name")
