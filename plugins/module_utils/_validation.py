# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Input checks shared by the modules, run before anything is touched.

Every check takes the value and the name of the option it came from, returns the value in the form the
collection stores (for example a GUID without braces, a gMSA name without ``$``) and raises
:class:`ValidationError` naming that option and the rule that was broken.
"""

from __future__ import annotations

import re

# sAMAccountName may not contain these, nor control characters (Microsoft KB 909264, "Naming conventions in
# Active Directory for computers, domains, sites, and OUs"); spaces are refused too because a gMSA name is
# also the host part of its SPNs.
_GMSA_NAME_FORBIDDEN = '"/\\[]:;|=,+*?<>@'
GMSA_NAME_MAX_LENGTH = 15
# Users' and groups' sAMAccountName: the same characters are refused (KB 909264); users' logon names are limited
# to 20 characters ("User-Logon-Name (Pre Windows 2000)"), other principals' to the attribute's 256.
USER_NAME_MAX_LENGTH = 20
PRINCIPAL_NAME_MAX_LENGTH = 256

# NetBIOS domain names (KB 909264): these characters are refused and a name cannot start with a period.
# Periods elsewhere are discouraged but exist in domains upgraded from Windows NT, so they pass.
_NETBIOS_FORBIDDEN = '\\/:*?"<>|'
NETBIOS_NAME_MAX_LENGTH = 15

DNS_NAME_MAX_LENGTH = 253
DNS_LABEL_MAX_LENGTH = 63
# One RFC 1123 label; DNS names use it case-insensitively, Kubernetes names in lower case only.
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL_RE = re.compile(_LABEL, re.IGNORECASE)
_K8S_LABEL_RE = re.compile(_LABEL)
_K8S_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

# serviceclass/host[:port][/servicename] ("Name Formats for Unique SPNs"); MSSQLSvc puts an instance name
# where the port goes.
_SPN_RE = re.compile(r"(?P<service_class>[^/:]+)/(?P<host>[^/:]+)(?::(?P<port>[^/:]+))?(?:/(?P<service_name>[^/]+))?")

# MS-DTYP 2.4.2.1: the identifier authority is decimal below 2**32 and 0x + 12 hex digits above.
_SID_RE = re.compile(r"S-1-(?P<authority>0x[0-9a-f]{12}|\d+)(?P<sub_authorities>(?:-\d+){1,15})", re.IGNORECASE)
_SID_AUTHORITY_DECIMAL_LIMIT = 2**32
_SID_AUTHORITY_LIMIT = 2**48
_SID_SUB_AUTHORITY_LIMIT = 2**32

# RFC 4514 2.3: an attribute type is a keystring (letter first) or an OID; a value is a string with ``\\``
# escapes (of a special character or two hex digits) or ``#`` and hex (BER). Unescaped, a value cannot hold
# ``"+,;<>\\`` or NUL.
_DN_ATTRIBUTE_TYPE = r"(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)*)"
_DN_VALUE = r"(?:#(?:[0-9A-Fa-f]{2})+|(?:[^\\\"+,;<>\x00]|\\(?:[0-9A-Fa-f]{2}|[ \"#+,;<=>\\]))*)"
_DN_ATTRIBUTE = rf"{_DN_ATTRIBUTE_TYPE}\s*=\s*{_DN_VALUE}"
_DN_RDN = rf"{_DN_ATTRIBUTE}(?:\+{_DN_ATTRIBUTE})*"
# AD also reads "OU=x, DC=y": a space after the comma.
_DN_RE = re.compile(rf"{_DN_RDN}(?:,\s*{_DN_RDN})*")

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_GUID_RE = re.compile(rf"(?P<braced>\{{{_GUID}\}})|{_GUID}", re.IGNORECASE)


class ValidationError(ValueError):
    """Invalid input. ``str(error)`` reads ``<field>: <what is wrong and the rule>``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, prefix: str) -> ValidationError:
        """Return this error with its field nested under ``prefix``, e.g. ``credspecs[2]``."""
        return ValidationError(f"{prefix}.{self.field}", self.message)


def _require_string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise ValidationError(field, "must not be empty")
    return value


def _forbidden_characters(name: str, forbidden: str) -> str:
    """Return the distinct characters of ``name`` that are in ``forbidden``, whitespace or unprintable."""
    return "".join(sorted({char for char in name if char in forbidden or char.isspace() or not char.isprintable()}))


def validate_gmsa_name(value: object, field: str) -> str:
    """Check a gMSA name and return it without the trailing ``$`` of its sAMAccountName.

    Rules: at most 15 characters once ``$`` is removed; none of ``"/\\[]:;|=,+*?<>@``, spaces or control
    characters; not made of periods only.
    """
    name = _require_string(value, field).removesuffix("$")
    if not name:
        raise ValidationError(field, f"{value!r} has nothing before the '$'")
    if len(name) > GMSA_NAME_MAX_LENGTH:
        raise ValidationError(
            field, f"{name!r} is {len(name)} characters; a gMSA name (sAMAccountName without $) has at most {GMSA_NAME_MAX_LENGTH}"
        )
    bad = _forbidden_characters(name, _GMSA_NAME_FORBIDDEN)
    if bad:
        raise ValidationError(
            field, f"{name!r} contains {bad!r}; a gMSA name cannot contain spaces, control characters or any of {_GMSA_NAME_FORBIDDEN}"
        )
    if not name.strip("."):
        raise ValidationError(field, f"{name!r} consists of periods only; a gMSA name needs at least one other character")
    return name


def validate_host_name_source(name: str, field: str) -> str:
    """Check that a gMSA name (validated, without ``$``) can be the host part of its DNS host name and SPNs.

    The account's default ``dNSHostName`` is ``NAME.<domain>`` and its default SPNs ``host/NAME`` and
    ``host/NAME.<domain>``; they get the same check as a DNS name given explicitly, so ``Web'App`` or
    ``a$(whoami)`` cannot slip into them by derivation.
    """
    try:
        return validate_dns_name(name, field)
    except ValidationError as error:
        raise ValidationError(
            field, f"{name!r} cannot be the host name in the account's dNSHostName and SPNs ({error.message}); rename the account or give a valid dns_hostname"
        ) from None


def _validate_principal_name(value: object, field: str, what: str, max_length: int) -> str:
    name = _require_string(value, field)
    if len(name) > max_length:
        raise ValidationError(field, f"{name!r} is {len(name)} characters; a {what} name (sAMAccountName) has at most {max_length}")
    bad = "".join(sorted({char for char in name if char in _GMSA_NAME_FORBIDDEN or not char.isprintable()}))
    if bad:
        raise ValidationError(field, f"{name!r} contains {bad!r}; a {what} name cannot contain control characters or any of {_GMSA_NAME_FORBIDDEN}")
    if not name.strip(". "):
        raise ValidationError(field, f"{name!r} consists of periods and spaces only; a {what} name needs another character")
    if name != name.strip():
        raise ValidationError(field, f"{name!r} starts or ends with whitespace, which AD would not keep as given")
    return name


def validate_user_name(value: object, field: str) -> str:
    """Check a domain user's sAMAccountName: 1 to 20 characters, none of ``"/\\[]:;|=,+*?<>@`` or control characters."""
    return _validate_principal_name(value, field, "user", USER_NAME_MAX_LENGTH)


def validate_principal(value: object, field: str) -> str:
    """Check a user, group or computer given as a SID, a distinguished name (has ``=``) or a sAMAccountName."""
    principal = _require_string(value, field)
    if _SID_RE.fullmatch(principal):
        return validate_sid(principal, field)
    if "=" in principal:
        return validate_distinguished_name(principal, field)
    return _validate_principal_name(principal, field, "user, group or computer", PRINCIPAL_NAME_MAX_LENGTH)


def validate_distinguished_name(value: object, field: str) -> str:
    """Check that a value is a distinguished name (RFC 4514), e.g. ``OU=gMSA,DC=contoso,DC=com``.

    Only the syntax: whether the object exists is the directory's answer. Special characters in a value must be
    escaped (``CN=Smith\\, John``); control characters are refused even when the syntax would carry them.
    """
    dn = _require_string(value, field)
    if any(not char.isprintable() for char in dn):
        raise ValidationError(field, f"{dn!r} contains control characters; a distinguished name cannot")
    if not _DN_RE.fullmatch(dn):
        raise ValidationError(
            field,
            f"{dn!r} is not a distinguished name (RFC 4514): attribute=value parts separated by ',', with ',+\"\\<>;' in a value escaped by '\\', "
            "e.g. OU=gMSA,DC=contoso,DC=com",
        )
    return dn


def validate_netbios_domain_name(value: object, field: str) -> str:
    """Check a NetBIOS domain name (``CONTOSO``): 1 to 15 characters, none of ``\\/:*?"<>|`` or spaces, no leading period."""
    name = _require_string(value, field)
    if len(name) > NETBIOS_NAME_MAX_LENGTH:
        raise ValidationError(field, f"{name!r} is {len(name)} characters; a NetBIOS domain name has at most {NETBIOS_NAME_MAX_LENGTH}")
    bad = _forbidden_characters(name, _NETBIOS_FORBIDDEN)
    if bad:
        raise ValidationError(
            field, f"{name!r} contains {bad!r}; a NetBIOS domain name cannot contain spaces, control characters or any of {_NETBIOS_FORBIDDEN}"
        )
    if name.startswith("."):
        raise ValidationError(field, f"{name!r} starts with a period, which a NetBIOS domain name cannot")
    return name


def validate_dns_name(value: object, field: str) -> str:
    """Check a DNS host or domain name (RFC 1123): labels of letters, digits and inner hyphens.

    A label has at most 63 characters, the name at most 253. The name is returned as given; write it
    without the trailing root dot.
    """
    name = _require_string(value, field)
    if len(name) > DNS_NAME_MAX_LENGTH:
        raise ValidationError(field, f"{name[:20]!r}... is {len(name)} characters; a DNS name has at most {DNS_NAME_MAX_LENGTH}")
    if name.endswith("."):
        raise ValidationError(field, f"{name!r} ends with '.'; write the DNS name without the trailing dot")
    for label in name.split("."):
        if not label:
            raise ValidationError(field, f"{name!r} has an empty label; a DNS name cannot start with '.' or contain '..'")
        if len(label) > DNS_LABEL_MAX_LENGTH:
            raise ValidationError(field, f"label {label!r} of {name!r} is {len(label)} characters; a DNS label has at most {DNS_LABEL_MAX_LENGTH}")
        if not _DNS_LABEL_RE.fullmatch(label):
            raise ValidationError(
                field, f"label {label!r} of {name!r} is not an RFC 1123 label: letters, digits and '-' only, starting and ending with a letter or digit"
            )
    return name


def validate_spn(value: object, field: str) -> str:
    """Check a service principal name: ``serviceclass/host[:port][/servicename]``.

    ``host`` must be a DNS name (``web01`` or ``web01.contoso.com``). After ``:`` comes a port (1-65535) or,
    as MSSQLSvc uses it, an instance name. Whitespace is refused anywhere.
    """
    spn = _require_string(value, field)
    if any(char.isspace() for char in spn):
        raise ValidationError(field, f"{spn!r} contains whitespace; an SPN is serviceclass/host[:port][/servicename]")
    match = _SPN_RE.fullmatch(spn)
    if not match:
        raise ValidationError(field, f"{spn!r} is not an SPN; expected serviceclass/host[:port][/servicename], e.g. HTTP/web01.contoso.com")
    try:
        validate_dns_name(match["host"], field)
    except ValidationError as error:
        raise ValidationError(field, f"host of SPN {spn!r}: {error.message}") from None
    port = match["port"]
    if port is not None and port.isdigit() and not 1 <= int(port) <= 65535:
        raise ValidationError(field, f"port {port} of SPN {spn!r} is outside 1-65535")
    return spn


def validate_k8s_subdomain(value: object, field: str) -> str:
    """Check a Kubernetes object name that must be an RFC 1123 subdomain (GMSACredentialSpec, ClusterRole...).

    Same rule as the API server's ``IsDNS1123Subdomain``: at most 253 characters of lower case letters,
    digits, ``-`` and ``.``, starting and ending with a letter or digit.
    """
    name = _require_string(value, field)
    if len(name) > DNS_NAME_MAX_LENGTH:
        raise ValidationError(field, f"{name[:20]!r}... is {len(name)} characters; a Kubernetes object name has at most {DNS_NAME_MAX_LENGTH}")
    if not _K8S_SUBDOMAIN_RE.fullmatch(name):
        raise ValidationError(
            field,
            f"{name!r} is not a lowercase RFC 1123 subdomain: lower case letters, digits, '-' and '.' only, starting and ending with a letter or digit",
        )
    return name


def validate_k8s_label(value: object, field: str) -> str:
    """Check a Kubernetes name that must be an RFC 1123 label (namespaces): at most 63 of ``a-z``, ``0-9``, ``-``."""
    name = _require_string(value, field)
    if len(name) > DNS_LABEL_MAX_LENGTH:
        raise ValidationError(field, f"{name!r} is {len(name)} characters; a namespace name (RFC 1123 label) has at most {DNS_LABEL_MAX_LENGTH}")
    if not _K8S_LABEL_RE.fullmatch(name):
        raise ValidationError(
            field, f"{name!r} is not a lowercase RFC 1123 label: lower case letters, digits and '-' only, starting and ending with a letter or digit"
        )
    return name


def credspec_name_from_account(account_name: object, field: str) -> str:
    """Derive the GMSACredentialSpec object name from a gMSA name.

    The rule, applied to the validated gMSA name (``$`` already removed): lower-case it, replace every run
    of characters other than ``a-z`` and ``0-9`` (underscores, periods, non-ASCII letters...) with one ``-``,
    then drop ``-`` from both ends. ``WebApp01`` gives ``webapp01``, ``Web_App.01$`` gives ``web-app-01``.
    The result is at most 15 characters, so it is a valid RFC 1123 label and subdomain. Different gMSA
    names can give the same object name (``web_app``, ``web.app``); callers that take several accounts
    must check for that.
    """
    name = validate_gmsa_name(account_name, field)
    derived = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not derived:
        raise ValidationError(field, f"{name!r} has no letter or digit to build a Kubernetes object name from; give the credspec name explicitly")
    return derived


def parse_sid(value: object, field: str) -> tuple[int, tuple[int, ...]]:
    """Split a SID string (``S-1-5-21-...``) into its identifier authority and sub-authorities."""
    sid = _require_string(value, field)
    match = _SID_RE.fullmatch(sid)
    if not match:
        raise ValidationError(field, f"{sid!r} is not a SID; expected S-1-<authority>-<sub-authority>... with 1 to 15 sub-authorities")
    authority_text = match["authority"]
    authority = int(authority_text, 16) if authority_text.lower().startswith("0x") else int(authority_text)
    sub_authorities = tuple(int(part) for part in match["sub_authorities"][1:].split("-"))
    if authority >= _SID_AUTHORITY_LIMIT:
        raise ValidationError(field, f"{sid!r} has an identifier authority above 2^48-1")
    if any(part >= _SID_SUB_AUTHORITY_LIMIT for part in sub_authorities):
        raise ValidationError(field, f"{sid!r} has a sub-authority above 2^32-1")
    return authority, sub_authorities


def format_sid(authority: int, sub_authorities: tuple[int, ...]) -> str:
    """Render a SID the way Windows does (``ConvertSidToStringSid``)."""
    authority_text = str(authority) if authority < _SID_AUTHORITY_DECIMAL_LIMIT else f"0x{authority:012X}"
    return "-".join(["S-1", authority_text, *(str(part) for part in sub_authorities)])


def validate_sid(value: object, field: str) -> str:
    """Check a SID string and return it in canonical form (``S`` upper case, no leading zeros)."""
    return format_sid(*parse_sid(value, field))


def validate_domain_sid(value: object, field: str) -> str:
    """Check that a SID is a domain SID, ``S-1-5-21-x-y-z``, and not the SID of an account in the domain.

    Credential specs carry the domain's SID; putting the gMSA's own SID there is a common mistake, so it
    gets its own message.
    """
    authority, sub_authorities = parse_sid(value, field)
    sid = format_sid(authority, sub_authorities)
    if authority == 5 and sub_authorities[0] == 21 and len(sub_authorities) == 5:
        raise ValidationError(
            field, f"{sid!r} is the SID of an account (it ends with a RID); give the domain SID, {format_sid(5, sub_authorities[:4])!r}"
        )
    if authority != 5 or sub_authorities[0] != 21 or len(sub_authorities) != 4:
        raise ValidationError(field, f"{sid!r} is not a domain SID; a domain SID has the form S-1-5-21-x-y-z")
    return sid


def validate_guid(value: object, field: str) -> str:
    """Check a GUID (8-4-4-4-12 hex digits, braces optional) and return it lower case without braces.

    That is how ``ConvertTo-Json`` writes a ``System.Guid``, hence how credential specs carry the domain GUID.
    """
    guid = _require_string(value, field)
    if not _GUID_RE.fullmatch(guid):
        raise ValidationError(field, f"{guid!r} is not a GUID; expected 8-4-4-4-12 hex digits, e.g. 244818ae-87ca-4fcd-92ec-e79e5252348a")
    return guid.strip("{}").lower()


def validate_plugin_guid(value: object, field: str) -> str:
    """Check a CCG plugin GUID, which is a COM CLSID and so must be written in braces: ``{XXXXXXXX-...}``.

    Returned as given: the plugin is looked up by this text on the node.
    """
    guid = _require_string(value, field)
    match = _GUID_RE.fullmatch(guid)
    if not match:
        raise ValidationError(field, f"{guid!r} is not a GUID; a CCG plugin GUID is a CLSID such as {{CCC2A336-D7F3-4818-A213-272B7924213E}}")
    if not match["braced"]:
        raise ValidationError(field, f"{guid!r} needs braces; a CCG plugin GUID is written as a CLSID, '{{{guid}}}'")
    return guid
