# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Static checks of the WinRM transport's PowerShell, since no PowerShell runs here.

Each script's syntax tree (tree-sitter-powershell) is walked and every command name is checked against the
cmdlets the scripts may use (a table citing Microsoft's reference for Windows PowerShell 5.1 and the
ActiveDirectory and Kds modules), every parameter against that cmdlet's parameters, every ``$in.<key>``
against the keys the Python side sends (and the reverse), every attribute name against the lab DC's schema
(ad_schema_attributes.txt, generated from it: see tests/integration/ad_schema.py), and nothing may need
PowerShell 6+ or .NET Framework 4.6+ (Windows Server 2012 R2 has Windows PowerShell 5.1 on .NET 4.5).
A deliberate misspelling of each kind is shown to fail the check.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain import _ps_scripts
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DomainUser,
    GmsaAccount,
    GmsaCreation,
    GmsaSettings,
    gmsa_attribute_changes,
    principal_lookup_attribute,
)
from test_ps_scripts import PARSER, winrm_client  # the same parser, and a WinRM client on a fake protocol


_AD = "https://learn.microsoft.com/en-us/powershell/module/activedirectory/{}?view=windowsserver2025-ps"
_KDS = "https://learn.microsoft.com/en-us/powershell/module/kds/{}?view=windowsserver2025-ps"
_UTILITY = "https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.utility/{}?view=powershell-5.1"
_CORE = "https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.core/{}?view=powershell-5.1"

# about_CommonParameters (https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.core/about/about_commonparameters?view=powershell-5.1)
COMMON_PARAMETERS = (
    "Debug ErrorAction ErrorVariable InformationAction InformationVariable OutBuffer OutVariable PipelineVariable Verbose WarningAction WarningVariable"
)
SHOULD_PROCESS = "Confirm WhatIf"

# Cmdlet -> (its reference, its parameters besides the common ones). Windows PowerShell 5.1's own cmdlets are
# listed with 5.1's parameters only, so that a PowerShell 7 parameter (ConvertFrom-Json -AsHashtable,
# ForEach-Object -Parallel) fails the check too.
CMDLETS = {
    "Get-ADDomain": (_AD.format("get-addomain"), "AuthType Credential Current Identity Server"),
    "Get-ADDomainController": (
        _AD.format("get-addomaincontroller"),
        "AuthType AvoidSelf Credential Discover DomainName Filter ForceDiscover Identity LDAPFilter MinimumDirectoryServiceVersion "
        "NextClosestSite Server Service SiteName Writable",
    ),
    "Get-ADObject": (
        _AD.format("get-adobject"),
        "AuthType Credential Filter Identity IncludeDeletedObjects LDAPFilter Partition Properties ResultPageSize ResultSetSize SearchBase SearchScope Server",
    ),
    "Get-ADServiceAccount": (
        _AD.format("get-adserviceaccount"),
        "AuthType Credential Filter Identity LDAPFilter Partition Properties ResultPageSize ResultSetSize SearchBase SearchScope Server",
    ),
    "New-ADServiceAccount": (
        _AD.format("new-adserviceaccount"),
        "AccountExpirationDate AccountNotDelegated AccountPassword AuthenticationPolicy AuthenticationPolicySilo AuthType Certificates "
        "CompoundIdentitySupported Credential Description DisplayName DNSHostName Enabled HomePage Instance KerberosEncryptionType "
        "ManagedPasswordIntervalInDays Name OtherAttributes PassThru Path PrincipalsAllowedToDelegateToAccount "
        "PrincipalsAllowedToRetrieveManagedPassword RestrictToOutboundAuthenticationOnly RestrictToSingleComputer SamAccountName Server "
        "ServicePrincipalNames TrustedForDelegation " + SHOULD_PROCESS,
    ),
    "Set-ADServiceAccount": (
        _AD.format("set-adserviceaccount"),
        "Add AccountExpirationDate AccountNotDelegated AuthenticationPolicy AuthenticationPolicySilo AuthType Certificates Clear "
        "CompoundIdentitySupported Credential Description DisplayName DNSHostName Enabled HomePage Identity Instance KerberosEncryptionType "
        "Partition PassThru PrincipalsAllowedToDelegateToAccount PrincipalsAllowedToRetrieveManagedPassword Remove Replace SamAccountName "
        "Server ServicePrincipalNames TrustedForDelegation " + SHOULD_PROCESS,
    ),
    "Remove-ADServiceAccount": (_AD.format("remove-adserviceaccount"), "AuthType Credential Identity Partition Server " + SHOULD_PROCESS),
    "Get-ADUser": (
        _AD.format("get-aduser"),
        "AuthType Credential Filter Identity LDAPFilter Partition Properties ResultPageSize ResultSetSize SearchBase SearchScope Server",
    ),
    "New-ADUser": (
        _AD.format("new-aduser"),
        "AccountExpirationDate AccountNotDelegated AccountPassword AllowReversiblePasswordEncryption AuthenticationPolicy "
        "AuthenticationPolicySilo AuthType CannotChangePassword Certificates ChangePasswordAtLogon City Company CompoundIdentitySupported "
        "Country Credential Department Description DisplayName Division EmailAddress EmployeeID EmployeeNumber Enabled Fax GivenName "
        "HomeDirectory HomeDrive HomePage HomePhone Initials Instance KerberosEncryptionType LogonWorkstations Manager MobilePhone Name "
        "Office OfficePhone Organization OtherAttributes OtherName PassThru PasswordNeverExpires PasswordNotRequired Path POBox PostalCode "
        "PrincipalsAllowedToDelegateToAccount ProfilePath SamAccountName ScriptPath Server ServicePrincipalNames SmartcardLogonRequired "
        "State StreetAddress Surname Title TrustedForDelegation Type UserPrincipalName " + SHOULD_PROCESS,
    ),
    "Set-ADUser": (
        _AD.format("set-aduser"),
        "Add AccountExpirationDate AccountNotDelegated AllowReversiblePasswordEncryption AuthenticationPolicy AuthenticationPolicySilo "
        "AuthType CannotChangePassword Certificates ChangePasswordAtLogon City Clear Company CompoundIdentitySupported Country Credential "
        "Department Description DisplayName Division EmailAddress EmployeeID EmployeeNumber Enabled Fax GivenName HomeDirectory HomeDrive "
        "HomePage HomePhone Identity Initials Instance KerberosEncryptionType LogonWorkstations Manager MobilePhone Office OfficePhone "
        "Organization OtherName Partition PassThru PasswordNeverExpires PasswordNotRequired POBox PostalCode "
        "PrincipalsAllowedToDelegateToAccount ProfilePath Remove Replace SamAccountName ScriptPath Server ServicePrincipalNames "
        "SmartcardLogonRequired State StreetAddress Surname Title TrustedForDelegation UserPrincipalName " + SHOULD_PROCESS,
    ),
    "Remove-ADUser": (_AD.format("remove-aduser"), "AuthType Credential Identity Partition Server " + SHOULD_PROCESS),
    "Set-ADAccountPassword": (
        _AD.format("set-adaccountpassword"),
        "AuthType Credential Identity NewPassword OldPassword Partition PassThru Reset Server " + SHOULD_PROCESS,
    ),
    "New-ADGroup": (
        _AD.format("new-adgroup"),
        "AuthType Credential Description DisplayName GroupCategory GroupScope HomePage Instance ManagedBy Name OtherAttributes PassThru "
        "Path SamAccountName Server " + SHOULD_PROCESS,
    ),
    "Set-ADGroup": (
        _AD.format("set-adgroup"),
        "Add AuthType Clear Credential Description DisplayName GroupCategory GroupScope HomePage Identity Instance ManagedBy Partition "
        "PassThru Remove Replace SamAccountName Server " + SHOULD_PROCESS,
    ),
    "Get-KdsRootKey": (_KDS.format("get-kdsrootkey"), ""),
    "Add-KdsRootKey": (_KDS.format("add-kdsrootkey"), "EffectiveImmediately EffectiveTime LocalTestOnly " + SHOULD_PROCESS),
    "ConvertTo-Json": (_UTILITY.format("convertto-json"), "Compress Depth InputObject"),
    "ConvertFrom-Json": (_UTILITY.format("convertfrom-json"), "InputObject"),
    "New-Object": (_UTILITY.format("new-object"), "ArgumentList ComObject Property Strict TypeName"),
    "Add-Type": (
        _UTILITY.format("add-type"),
        "AssemblyName CodeDomProvider CompilerParameters IgnoreWarnings Language LiteralPath MemberDefinition Name Namespace OutputAssembly "
        "OutputType PassThru Path ReferencedAssemblies TypeDefinition UsingNamespace",
    ),
    "Import-Module": (
        _CORE.format("import-module"),
        "Alias ArgumentList AsCustomObject Assembly CimNamespace CimResourceUri CimSession Cmdlet DisableNameChecking Force "
        "FullyQualifiedName Function Global MaximumVersion MinimumVersion ModuleInfo Name NoClobber PassThru Prefix PSSession "
        "RequiredVersion Scope Variable",
    ),
    "ForEach-Object": (_CORE.format("foreach-object"), "ArgumentList Begin End InputObject MemberName Process RemainingScripts"),
    "Where-Object": (
        _CORE.format("where-object"),
        "CContains CEQ CGE CGT CIn CLE CLike CLT CMatch CNE CNotContains CNotIn CNotLike CNotMatch Contains EQ FilterScript GE GT In "
        "InputObject Is IsNot LE Like LT Match NE Not NotContains NotIn NotLike NotMatch Property Value",
    ),
}
_PARAMETERS = {name.lower(): {parameter.lower() for parameter in f"{parameters} {COMMON_PARAMETERS}".split()} for name, (_url, parameters) in CMDLETS.items()}

# Names the ActiveDirectory module adds to its objects besides the LDAP attributes ("extended properties",
# e.g. https://learn.microsoft.com/en-us/powershell/module/activedirectory/get-aduser?view=windowsserver2025-ps#-properties).
AD_MODULE_PROPERTIES = {"passwordneverexpires", "sid", "enabled"}

# Removed in tests: what Windows PowerShell 5.1 on .NET Framework 4.5 does not have.
NET46_MEMBERS = {
    "ToUnixTimeSeconds", "ToUnixTimeMilliseconds", "FromUnixTimeSeconds", "FromUnixTimeMilliseconds",  # DateTimeOffset, .NET 4.6
    "HashData", "ToHexString", "FromHexString", "Fill",  # .NET 5 / .NET Core
}
NET46_TYPES = {
    "System.Text.Json", "System.Span", "System.Memory", "System.Buffers", "System.ValueTuple", "System.Security.Cryptography.AesGcm",
    "System.Security.Cryptography.RSAEncryptionPadding", "System.Security.Cryptography.HashAlgorithmName",
    "System.Runtime.InteropServices.RuntimeInformation",
}
PS6_VARIABLES = {"$isWindows", "$isLinux", "$isMacOS", "$isCoreCLR", "$PSStyle"}

with open(os.path.join(os.path.dirname(__file__), "ad_schema_attributes.txt"), encoding="ascii") as schema_file:
    SCHEMA_ATTRIBUTES = {line.strip().lower() for line in schema_file if line.strip() and not line.startswith("#")}


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def text(node) -> str:
    return node.text.decode("utf-8")


def unquote(literal: str) -> str:
    return literal[1:-1] if literal[:1] in "'\"" else literal


_WRAPPERS = {
    "left_assignment_expression", "pipeline", "pipeline_chain", "logical_expression", "bitwise_expression", "comparison_expression",
    "additive_expression", "multiplicative_expression", "format_expression", "range_expression", "array_literal_expression", "unary_expression",
}


def unwrap(node):
    """The expression itself under the grammar's one-child precedence levels."""
    while node.type in _WRAPPERS and len(node.children) == 1:
        node = node.children[0]
    return node


def children_of_type(node, *types):
    return [child for child in node.children if child.type in types]


@dataclasses.dataclass
class ScriptFacts:
    """What a script uses, read from its syntax tree."""

    commands: list[tuple[str, list[str]]]  # name, named parameters (with splatted keys)
    functions: set[str]
    input_keys: set[str]
    attributes: set[str]
    members: set[str]
    types: set[str]
    variables: set[str]
    chain_operators: list[str]
    errors: list[str]


def _assigned_hashtables(root) -> dict[str, list]:
    """``$name = @{...}`` -> the hash literals assigned to ``$name``; ``$name['Key'] = ...`` -> keys too."""
    assigned: dict[str, list] = {}
    for node in walk(root):
        if node.type != "assignment_expression":
            continue
        target, value = unwrap(node.children[0]), unwrap(node.children[-1])
        if target.type == "variable":
            if value.type == "hash_literal_expression":
                assigned.setdefault(text(target).lstrip("$").lower(), []).append(("literal", value))
        elif target.type == "element_access":
            variable = children_of_type(target, "variable")
            key = [index for index in map(unwrap, target.children) if index.type == "string_literal"]
            if variable and key:
                assigned.setdefault(text(variable[0]).lstrip("$").lower(), []).append(("element", unquote(text(key[0])), value))
    return assigned


def _hash_keys(literal) -> list[tuple[str, object]]:
    """The top-level keys of a hash literal, each with its value node."""
    body = children_of_type(literal, "hash_literal_body")
    entries = children_of_type(body[0], "hash_entry") if body else []
    return [(unquote(text(entry.children[0])), entry.children[-1]) for entry in entries]


def script_facts(script: str) -> ScriptFacts:
    tree = PARSER.parse(script.encode("utf-8"))
    root = tree.root_node
    hashtables = _assigned_hashtables(root)
    facts = ScriptFacts([], set(), set(), set(), set(), set(), set(), [], [])
    attribute_parameters = {"add", "remove", "replace"}

    def note_attribute_strings(node) -> None:
        for child in walk(node):
            if child.type == "string_literal":
                facts.attributes.add(unquote(text(child)))

    for node in walk(root):
        if node.type == "ERROR" or node.is_missing:
            facts.errors.append(text(node)[:40])
        elif node.type == "function_statement":
            facts.functions.add(text(children_of_type(node, "function_name")[0]).lower())
        elif node.type == "pipeline_chain_tail":
            facts.chain_operators.append(text(node))
        elif node.type == "variable":
            facts.variables.add(text(node))
        elif node.type in ("type_name", "generic_token"):
            facts.types.add(text(node))
        elif node.type == "member_access":
            target, name = node.children[0], node.children[-1]
            member = name.children[0] if name.children else name
            if member.type == "string_literal":
                facts.attributes.add(unquote(text(member)))  # $x.'msDS-...': always an attribute name
            elif target.type == "variable" and text(target).lower() == "$in":
                if text(member) != "PSObject":  # PowerShell's own view of the object, used to check the keys
                    facts.input_keys.add(text(member))
            elif target.type == "variable" and text(target).lower() in ("$account", "$user"):
                facts.attributes.add(text(member))  # the parameter of ConvertTo-GmsaResult / ConvertTo-UserResult
            else:
                facts.members.add(text(member))
        elif node.type == "invokation_expression":
            facts.members.update(text(child) for child in children_of_type(node, "member_name"))
        elif node.type == "assignment_expression":
            target = unwrap(node.children[0])
            if target.type == "variable" and text(target).lower().endswith("properties"):
                note_attribute_strings(node.children[-1])
        elif node.type == "command":
            names = children_of_type(node, "command_name")
            if not names:
                continue  # ". { ... }": the wrapper dot-sources the body
            parameters, previous = [], None
            for elements in children_of_type(node, "command_elements"):
                for element in map(unwrap, elements.children):
                    if element.type == "command_parameter":
                        parameters.append(text(element).lstrip("-").rstrip(":"))
                    elif element.type == "variable" and text(element).startswith("@"):
                        for entry in hashtables.get(text(element)[1:].lower(), []):
                            if entry[0] == "literal":
                                for key, value in _hash_keys(entry[1]):
                                    parameters.append(key)
                                    if key.lower() in attribute_parameters:
                                        _note_hash_attributes(value, facts, hashtables)
                            else:
                                parameters.append(entry[1])
                                if entry[1].lower() in attribute_parameters:
                                    _note_hash_attributes(entry[2], facts, hashtables)
                                elif entry[1].lower() == "clear":
                                    note_attribute_strings(entry[2])
                    elif previous is not None and previous.lower() in ("properties", "clear") and element.type != "command_argument_sep":
                        note_attribute_strings(element)
                    elif previous is not None and previous.lower() == "filter" and element.type == "string_literal":
                        facts.attributes.add(unquote(text(element)).split()[0])
                    if element.type == "command_parameter":
                        previous = parameters[-1]
                    elif element.type != "command_argument_sep":
                        previous = None
            facts.commands.append((text(names[0]), parameters))
    return facts


def _note_hash_attributes(value, facts: ScriptFacts, hashtables: dict) -> None:
    """-Add/-Remove/-Replace @{ attribute = ... } or $table: the keys are attribute names."""
    value = unwrap(value)
    if value.type == "variable":
        for entry in hashtables.get(text(value).lstrip("$").lower(), []):
            if entry[0] == "literal":
                facts.attributes.update(key for key, _value in _hash_keys(entry[1]))
            else:
                facts.attributes.add(entry[1])
        return
    for literal in walk(value):
        if literal.type == "hash_literal_expression":
            facts.attributes.update(key for key, _value in _hash_keys(literal))
            return


# --- the keys the Python side sends ---------------------------------------------------------------------------

class _Sent(Exception):
    """Raised by the recording protocol once the request is on its way: nothing needs to come back."""


class _RecordingProtocol:
    def __init__(self) -> None:
        self.requests: list[dict] = []

    def open_shell(self):
        return "shell"

    def run_command(self, shell_id, command, arguments, console_mode_stdin=True, skip_cmd_shell=False):
        return "command"

    def send_command_input(self, shell_id, command_id, stdin_input, end=False):
        self.requests.append(json.loads(stdin_input))
        raise _Sent

    def cleanup_command(self, shell_id, command_id):
        pass


_SETTINGS = GmsaSettings("web.contoso.com", ("host/web",), ("S-1-5-21-1-2-3-1105",), 24, "web", True)
_ACCOUNT = GmsaAccount("web", "web$", "CN=web,DC=contoso,DC=com", "S-1-5-21-1-2-3-1110", "5f1e3b47-1c2c-4d8e-9b47-2d6f3a2b9f10", 30, _SETTINGS)
_USER = DomainUser("ccg", "CN=ccg,DC=contoso,DC=com", "S-1-5-21-1-2-3-1111", True, True, None)
_CALLS = {
    "domain_facts": lambda client: client.domain_facts(),
    "container_exists": lambda client: client.container_exists("CN=Users,DC=contoso,DC=com"),
    "find_gmsas": lambda client: client.find_gmsas(["web"]),
    "create_gmsa": lambda client: client.create_gmsa("web", "CN=Users,DC=contoso,DC=com", 30, _SETTINGS),
    "update_gmsa": lambda client: client.update_gmsa(_ACCOUNT, dataclasses.replace(_SETTINGS, password_readers=(), enabled=False)),
    "delete_gmsa": lambda client: client.delete_gmsa(_ACCOUNT),
    "create_gmsas": lambda client: client.create_gmsas([GmsaCreation("web", "CN=Users,DC=contoso,DC=com", 30, _SETTINGS)]),
    "update_gmsas": lambda client: client.update_gmsas([(_ACCOUNT, dataclasses.replace(_SETTINGS, password_readers=(), enabled=False))]),
    "delete_gmsas": lambda client: client.delete_gmsas([_ACCOUNT]),
    "resolve_principals": lambda client: client.resolve_principals(["Domain Admins"]),
    "kds_root_keys": lambda client: client.kds_root_keys(),
    "create_kds_root_key": lambda client: client.create_kds_root_key(datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)),
    "find_user": lambda client: client.find_user("ccg"),
    "create_user": lambda client: client.create_user("ccg", "CN=Users,DC=contoso,DC=com", "pw", None, True, True),
    "update_user": lambda client: client.update_user(_USER, description=None, enabled=True, password_never_expires=True, password="pw"),
    "delete_user": lambda client: client.delete_user(_USER),
    "create_group": lambda client: client.create_group("readers", "CN=Users,DC=contoso,DC=com"),
    "set_group_members": lambda client: client.set_group_members("CN=readers,DC=contoso,DC=com", ["CN=ccg,DC=contoso,DC=com"], []),
    "credentials_valid": lambda client: client.credentials_valid("ccg", "pw"),
    "read_managed_password": lambda client: client.read_managed_password(_ACCOUNT, "ccg", "pw"),
}


def sent_request(operation: str) -> dict:
    client, _canned = winrm_client({})
    protocol = _RecordingProtocol()
    client._protocol = protocol
    with pytest.raises(_Sent):
        _CALLS[operation](client)
    return protocol.requests[0]


def python_attributes() -> set[str]:
    """The attribute names the Python side puts into a request (-Replace/-Clear keys, -Filter attributes)."""
    replace, _clear = gmsa_attribute_changes(None, _SETTINGS)
    lookups = {principal_lookup_attribute(identity) for identity in ("S-1-5-21-1-2-3-1105", "CN=x,DC=contoso,DC=com", "web")}
    return set(replace) | lookups


# --- the checks -------------------------------------------------------------------------------------------------

def script_problems(operation: str, script: str) -> list[str]:
    """Everything wrong with ``script`` as the script of ``operation``; empty when it passes."""
    facts = script_facts(script)
    problems = [f"does not parse near {error!r}" for error in facts.errors]
    for name, parameters in facts.commands:
        if name.lower() in facts.functions:
            continue
        if name.lower() not in _PARAMETERS:
            problems.append(f"unknown command {name}")
            continue
        problems += [f"{name} has no parameter -{parameter}" for parameter in parameters if parameter.lower() not in _PARAMETERS[name.lower()]]
    problems += [
        f"unknown attribute {attribute!r}" for attribute in sorted(facts.attributes)
        if attribute.lower() not in SCHEMA_ATTRIBUTES | AD_MODULE_PROPERTIES
    ]
    sent = set(sent_request(operation)["input"])
    problems += [f"reads $in.{key}, which the Python side does not send" for key in sorted(facts.input_keys - sent)]
    problems += [f"ignores the input key {key!r} that the Python side sends" for key in sorted(sent - facts.input_keys)]
    problems += [f"uses {member}, which .NET Framework 4.5 lacks" for member in sorted(facts.members & NET46_MEMBERS)]
    problems += [
        f"uses the type {name}, which .NET Framework 4.5 lacks" for name in sorted(facts.types) if any(name.startswith(denied) for denied in NET46_TYPES)
    ]
    ps6_variables = {variable.lower() for variable in PS6_VARIABLES}
    problems += [f"uses {variable}, which Windows PowerShell 5.1 lacks" for variable in sorted(facts.variables) if variable.lower() in ps6_variables]
    problems += [f"uses the pipeline chain operator {operator} (PowerShell 7)" for operator in facts.chain_operators]
    return problems


@pytest.mark.parametrize("operation", sorted(_ps_scripts.OPERATIONS))
def test_script_passes_the_static_checks(operation):
    assert script_problems(operation, _ps_scripts.build_script(operation)) == []


def test_the_bootstrap_uses_only_known_commands():
    facts = script_facts(_ps_scripts.BOOTSTRAP)
    assert not facts.errors
    assert {name for name, _parameters in facts.commands} <= {"ConvertFrom-Json"}
    assert all(parameter in ("InputObject",) for _name, parameters in facts.commands for parameter in parameters)


def test_the_checks_see_the_scripts():
    # Guards against a checker that passes because it finds nothing.
    facts = script_facts(_ps_scripts.build_script("create_gmsa"))
    commands = dict(facts.commands)
    assert "ManagedPasswordIntervalInDays" in commands["New-ADServiceAccount"]
    assert {"msDS-GroupMSAMembership", "servicePrincipalName"} <= facts.attributes
    assert {"name", "container", "spns"} <= facts.input_keys
    update = script_facts(_ps_scripts.build_script("set_group_members"))
    assert "member" in update.attributes and "Add" in dict(update.commands)["Set-ADGroup"]


def test_the_python_side_attributes_are_in_the_schema():
    assert {attribute.lower() for attribute in python_attributes()} - SCHEMA_ATTRIBUTES == set()
    assert len(python_attributes()) >= 7


def test_the_input_key_check_of_the_wrapper_matches_the_tree():
    for operation in _ps_scripts.OPERATIONS:
        assert set(_ps_scripts.input_keys(operation)) == script_facts(_ps_scripts.build_script(operation)).input_keys, operation


# Each deliberate mistake, in a real script, must make the check fail naming it.
MISSPELLINGS = [
    ("find_gmsas", "Get-ADServiceAccount -Filter", "Get-ADServiceAcount -Filter", "unknown command Get-ADServiceAcount"),
    ("find_gmsas", "-Properties $gmsaProperties", "-Property $gmsaProperties", "Get-ADServiceAccount has no parameter -Property"),
    ("create_gmsa", "ManagedPasswordIntervalInDays = ", "ManagedPasswordInterval = ", "New-ADServiceAccount has no parameter -ManagedPasswordInterval"),
    ("create_user", "-Reset -NewPassword", "-Reset -NewPasword", "Set-ADAccountPassword has no parameter -NewPasword"),
    ("find_gmsas", "'msDS-GroupMSAMembership', 'msDS-Supported", "'msDS-GroupMSAMembershp', 'msDS-Supported", "unknown attribute 'msDS-GroupMSAMembershp'"),
    ("read_managed_password", "$account.'msDS-ManagedPassword'", "$account.'msDS-ManagedPasword'", "unknown attribute 'msDS-ManagedPasword'"),
    ("container_exists", "'distinguishedName -eq $dn'", "'distinguishedNme -eq $dn'", "unknown attribute 'distinguishedNme'"),
    ("set_group_members", "@{ member = [string[]]$in.add }", "@{ members = [string[]]$in.add }", "unknown attribute 'members'"),
    ("update_gmsa", "$replace['msDS-GroupMSAMembership']", "$replace['msDS-GroupManagedMembership']", "unknown attribute 'msDS-GroupManagedMembership'"),
    ("delete_gmsa", "$in.object_guid", "$in.objectguid", "reads $in.objectguid, which the Python side does not send"),
    ("delete_gmsa", "$in.object_guid", "$in.objectguid", "ignores the input key 'object_guid' that the Python side sends"),
]


@pytest.mark.parametrize("operation, correct, wrong, problem", MISSPELLINGS, ids=[case[3] for case in MISSPELLINGS])
def test_a_misspelling_fails_the_check(operation, correct, wrong, problem):
    script = _ps_scripts.build_script(operation)
    assert correct in script
    assert problem in script_problems(operation, script.replace(correct, wrong))


# Each feature of PowerShell 6+ or .NET 4.6+, added to a real script, must fail the check.
NEWER_THAN_51 = [
    ("$unixTime = [DateTimeOffset]::Now.ToUnixTimeSeconds()", "uses ToUnixTimeSeconds, which .NET Framework 4.5 lacks"),
    ("$when = [DateTimeOffset]::FromUnixTimeSeconds(0)", "uses FromUnixTimeSeconds, which .NET Framework 4.5 lacks"),
    ("$padding = [System.Security.Cryptography.RSAEncryptionPadding]::OaepSHA256", "uses the type System.Security.Cryptography.RSAEncryptionPadding"),
    ("Get-ADDomain && Get-ADDomain", "uses the pipeline chain operator && (PowerShell 7)"),
    ("Get-ADDomain || Get-ADDomain", "uses the pipeline chain operator || (PowerShell 7)"),
    ("$in.names | ForEach-Object -Parallel { $_ }", "ForEach-Object has no parameter -Parallel"),
    ("$table = ConvertFrom-Json -InputObject '{}' -AsHashtable", "ConvertFrom-Json has no parameter -AsHashtable"),
    ("$joined = $in.names | Join-String", "unknown command Join-String"),
    ("if ($IsWindows) { }", "uses $IsWindows, which Windows PowerShell 5.1 lacks"),
    ("$value = $in.names ?? @()", "does not parse"),
    ("$value = $in.names ? 1 : 2", "does not parse"),
    ("$value = $in?.names", "does not parse"),
]


@pytest.mark.parametrize("line, problem", NEWER_THAN_51, ids=[case[0] for case in NEWER_THAN_51])
def test_powershell_7_and_net_46_features_fail_the_check(line, problem):
    script = _ps_scripts.build_script("find_gmsas").replace("$accounts = foreach", f"{line}\n$accounts = foreach")
    problems = script_problems("find_gmsas", script)
    assert any(found.startswith(problem) for found in problems), problems


def test_no_secret_goes_through_a_cmdlet_parameter_that_module_logging_records():
    # ConvertTo-SecureString -AsPlainText would log the password (module logging records parameter values).
    for operation in _ps_scripts.OPERATIONS:
        names = {name.lower() for name, _parameters in script_facts(_ps_scripts.build_script(operation)).commands}
        assert "convertto-securestring" not in names, operation
