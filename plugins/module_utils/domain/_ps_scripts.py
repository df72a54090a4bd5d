# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""PowerShell run by the WinRM transport, kept as constants because AnsiballZ ships only Python.

The command line is always the same short :data:`BOOTSTRAP` (``powershell -EncodedCommand``): cmd.exe, which
WinRM starts the command through, refuses a command line over 8,191 characters, and a script passed there
would have to stay under it. The bootstrap reads one ASCII JSON document from standard input (sent in pipe
mode, so that ``ReadToEnd`` sees its end): ``script`` (what :func:`build_script` returns), ``input`` (the
operation's data, read into ``$in``) and ``server`` (the DC pinned for the run, empty on the first call).

A script never contains a value: the AD cmdlets get the input as parameters or as variables in ``-Filter``
(which the ActiveDirectory module evaluates itself), so quotes, ``$()``, backticks or ``;`` in a name stay
data. A body sets ``$result``; the wrapper prints ``{"result": ..., "server": ...}`` or ``{"error": {...}}``
as ASCII JSON, because WinRM shells use code page 437 and would mangle anything else.

Every script runs on Windows PowerShell 5.1 over .NET Framework 4.5 (Windows Server 2012 R2), so none uses
PowerShell 6+ syntax or .NET 4.6+ members (tests/unit/plugins/module_utils/domain/test_ps_scripts.py checks).
"""

from __future__ import annotations

import re

# The command line. [Console]::In is the raw stdin pipe here: -EncodedCommand leaves PowerShell's own input alone.
BOOTSTRAP = r"""
$ErrorActionPreference = 'Stop'
$document = [Console]::In.ReadToEnd()
if (-not $document -or -not $document.Trim()) {
    [Console]::Out.Write('{"error":{"message":"no request arrived on standard input","type":"EmptyInput","id":"EmptyInput"}}')
    exit 1
}
$request = ConvertFrom-Json -InputObject $document
if (-not $request.script) {
    [Console]::Out.Write('{"error":{"message":"the request on standard input has no script","type":"EmptyInput","id":"EmptyInput"}}')
    exit 1
}
$in = $request.input
$server = $request.server
. ([scriptblock]::Create($request.script))
""".strip()

WRAPPER_HEAD = r"""
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Write-AsciiJson($Value) {
    $json = ConvertTo-Json -InputObject $Value -Depth 6 -Compress
    [Console]::Out.Write([regex]::Replace($json, '[^\x00-\x7F]', { param($match) '\u{0:x4}' -f [int][char]$match.Value }))
}
function ConvertTo-SecureText([string]$Text) {
    # Character by character: ConvertTo-SecureString -AsPlainText would hand the text to a cmdlet parameter,
    # which module logging records.
    $secure = New-Object -TypeName System.Security.SecureString
    foreach ($character in $Text.ToCharArray()) { $secure.AppendChar($character) }
    $secure.MakeReadOnly()
    $secure
}
try {
    if ($null -eq $in) { throw 'the request carries no input document' }
    foreach ($key in $inputKeys) {
        if ($null -eq $in.PSObject.Properties[$key]) { throw "the input document lacks the key '$key'" }
    }
    # Building the AD: drive costs a directory search on every import, and nothing here uses it.
    $env:ADPS_LoadDefaultDrive = 0
    Import-Module ActiveDirectory
    # One DC for the whole module run, so that a read after a write sees the write.
    if (-not $server) { $server = [string](Get-ADDomainController -Discover -Writable).HostName[0] }
    $PSDefaultParameterValues['*-AD*:Server'] = $server
    $result = $null
    $null = . {
"""

WRAPPER_TAIL = r"""
    }
    Write-AsciiJson @{ result = $result; server = $server }
}
catch {
    $record = $_
    Write-AsciiJson @{ error = @{
        message = $record.Exception.Message
        type = $record.Exception.GetType().FullName
        id = $record.FullyQualifiedErrorId
    } }
    exit 1
}
"""

# Shared by the scripts that return gMSAs: the properties read and their JSON shape (see GmsaAccount).
GMSA_FUNCTIONS = r"""
$gmsaProperties = @(
    'DNSHostName', 'servicePrincipalName', 'msDS-GroupMSAMembership', 'msDS-SupportedEncryptionTypes',
    'msDS-ManagedPasswordInterval', 'Description', 'Enabled', 'objectGUID', 'objectSid'
)
function ConvertTo-GmsaResult($Account) {
    $membership = $Account.'msDS-GroupMSAMembership'
    @{
        name = $Account.SamAccountName.TrimEnd('$')
        sam_account_name = $Account.SamAccountName
        distinguished_name = $Account.DistinguishedName
        sid = $Account.objectSid.Value
        object_guid = $Account.objectGUID.ToString()
        password_interval_days = $Account.'msDS-ManagedPasswordInterval'
        dns_host_name = $Account.DNSHostName
        spns = @($Account.servicePrincipalName)
        membership = if ($membership) { [Convert]::ToBase64String($membership.GetSecurityDescriptorBinaryForm()) } else { $null }
        encryption_types = $Account.'msDS-SupportedEncryptionTypes'
        description = $Account.Description
        enabled = $Account.Enabled
    }
}
"""

DOMAIN_FACTS = r"""
$domain = Get-ADDomain
$result = @{
    distinguished_name = $domain.DistinguishedName
    dns_name = $domain.DNSRoot
    dns_tree_name = $domain.Forest
    netbios_name = $domain.NetBIOSName
    sid = $domain.DomainSID.Value
    guid = $domain.ObjectGUID.ToString()
}
"""

CONTAINER_EXISTS = r"""
$dn = $in.dn
$result = @{ exists = [bool](Get-ADObject -Filter 'distinguishedName -eq $dn') }
"""

# Many names: one search of every gMSA of the domain, keeping the wanted ones, costs less than a search per name
# (the names never go into filter text).
FIND_GMSAS = r"""
$wanted = New-Object -TypeName 'System.Collections.Generic.HashSet[string]' -ArgumentList ([System.StringComparer]::OrdinalIgnoreCase)
foreach ($name in $in.names) { $null = $wanted.Add($name + '$') }
$found = if ($wanted.Count -gt 16) {
    Get-ADServiceAccount -Filter * -Properties $gmsaProperties | Where-Object { $wanted.Contains($_.SamAccountName) }
} else {
    foreach ($samAccountName in $wanted) { Get-ADServiceAccount -Filter 'sAMAccountName -eq $samAccountName' -Properties $gmsaProperties }
}
$accounts = foreach ($account in $found) { ConvertTo-GmsaResult $account }
$result = @{ accounts = @($accounts) }
"""

# Who may retrieve the password goes through the cmdlet's own parameter (SIDs) on creation, when there is no
# descriptor yet whose other ACEs a rewrite must keep (UPDATE_GMSA writes the whole descriptor).
CREATE_GMSA = r"""
$parameters = @{
    Name = $in.name
    SamAccountName = $in.name + '$'
    Path = $in.container
    DNSHostName = $in.dns_host_name
    ManagedPasswordIntervalInDays = $in.password_interval_days
    KerberosEncryptionType = $in.encryption_types
    Enabled = $in.enabled
    PassThru = $true
}
if ($in.spns.Count) { $parameters['ServicePrincipalNames'] = [string[]]$in.spns }
if ($in.password_readers.Count) { $parameters['PrincipalsAllowedToRetrieveManagedPassword'] = [string[]]$in.password_readers }
if ($in.description) { $parameters['Description'] = $in.description }
$created = New-ADServiceAccount @parameters
$result = ConvertTo-GmsaResult (Get-ADServiceAccount -Identity $created.ObjectGUID -Properties $gmsaProperties)
"""

UPDATE_GMSA = r"""
$parameters = @{ Identity = $in.object_guid }
$replace = @{}
foreach ($property in $in.replace.PSObject.Properties) { $replace[$property.Name] = $property.Value }
if ($null -ne $in.membership) { $replace['msDS-GroupMSAMembership'] = [byte[]][Convert]::FromBase64String($in.membership) }
if ($replace.Count) { $parameters['Replace'] = $replace }
if ($in.clear.Count) { $parameters['Clear'] = [string[]]$in.clear }
if ($null -ne $in.enabled) { $parameters['Enabled'] = $in.enabled }
Set-ADServiceAccount @parameters
$result = ConvertTo-GmsaResult (Get-ADServiceAccount -Identity $in.object_guid -Properties $gmsaProperties)
"""

DELETE_GMSA = r"""
Remove-ADServiceAccount -Identity $in.object_guid -Confirm:$false
"""

# Each lookup names the attribute to match (sAMAccountName, objectSid or distinguishedName), chosen in Python.
RESOLVE_PRINCIPALS = r"""
$principals = foreach ($lookup in $in.lookups) {
    $value = $lookup.value
    $filter = $lookup.attribute + ' -eq $value'
    Get-ADObject -Filter $filter -Properties @('objectSid', 'sAMAccountName') |
        Where-Object { $_.objectSid } |
        ForEach-Object { @{
            identity = $lookup.value
            sid = $_.objectSid.Value
            distinguished_name = $_.DistinguishedName
            sam_account_name = $_.sAMAccountName
        } }
}
$result = @{ principals = @($principals) }
"""

# Seconds since 1970 by hand: DateTimeOffset.ToUnixTimeSeconds and FromUnixTimeSeconds came with .NET 4.6.
KDS_FUNCTIONS = r"""
$unixEpoch = New-Object -TypeName System.DateTime -ArgumentList 1970, 1, 1, 0, 0, 0, ([System.DateTimeKind]::Utc)
function ConvertTo-KdsResult($Key) {
    @{
        key_id = $Key.KeyId.ToString()
        created = [long][Math]::Floor(($Key.CreationTime.ToUniversalTime() - $unixEpoch).TotalSeconds)
        effective_time = [long][Math]::Floor(($Key.EffectiveTime.ToUniversalTime() - $unixEpoch).TotalSeconds)
    }
}
"""

KDS_ROOT_KEYS = r"""
$keys = Get-KdsRootKey | ForEach-Object { ConvertTo-KdsResult $_ }
$result = @{ keys = @($keys) }
"""

CREATE_KDS_ROOT_KEY = r"""
$keyId = Add-KdsRootKey -EffectiveTime $unixEpoch.AddSeconds($in.effective_time)
$result = ConvertTo-KdsResult (Get-KdsRootKey | Where-Object { $_.KeyId -eq $keyId })
"""

USER_FUNCTIONS = r"""
$userProperties = @('Description', 'PasswordNeverExpires', 'MemberOf', 'Enabled', 'objectSid')
function ConvertTo-UserResult($User) {
    @{
        name = $User.SamAccountName
        distinguished_name = $User.DistinguishedName
        sid = $User.objectSid.Value
        enabled = $User.Enabled
        password_never_expires = $User.PasswordNeverExpires
        description = $User.Description
        groups = @($User.MemberOf)
    }
}
"""

FIND_USER = r"""
$name = $in.name
$user = Get-ADUser -Filter 'sAMAccountName -eq $name' -Properties $userProperties
$result = if ($user) { ConvertTo-UserResult $user } else { $null }
"""

# New-ADUser -AccountPassword leaves a disabled user behind when the domain refuses the password. So: create
# it disabled without one, set the password, and delete the user again if that fails; enable it last.
CREATE_USER = r"""
$parameters = @{
    Name = $in.name
    SamAccountName = $in.name
    UserPrincipalName = $in.name + '@' + (Get-ADDomain).DNSRoot
    Path = $in.container
    Enabled = $false
    PasswordNeverExpires = $in.password_never_expires
    PassThru = $true
}
if ($in.description) { $parameters['Description'] = $in.description }
$created = New-ADUser @parameters
try {
    Set-ADAccountPassword -Identity $created.ObjectGUID -Reset -NewPassword (ConvertTo-SecureText $in.password)
    Set-ADUser -Identity $created.ObjectGUID -Enabled $in.enabled -PasswordNotRequired $false
}
catch {
    Remove-ADUser -Identity $created.ObjectGUID -Confirm:$false
    throw
}
$result = ConvertTo-UserResult (Get-ADUser -Identity $created.ObjectGUID -Properties $userProperties)
"""

UPDATE_USER = r"""
if ($null -ne $in.password) {
    Set-ADAccountPassword -Identity $in.sid -Reset -NewPassword (ConvertTo-SecureText $in.password)
}
$parameters = @{ Identity = $in.sid; Enabled = $in.enabled; PasswordNeverExpires = $in.password_never_expires }
if ($in.description) { $parameters['Description'] = $in.description } else { $parameters['Clear'] = 'description' }
Set-ADUser @parameters
$result = ConvertTo-UserResult (Get-ADUser -Identity $in.sid -Properties $userProperties)
"""

DELETE_USER = r"""
Remove-ADUser -Identity $in.sid -Confirm:$false
"""

CREATE_GROUP = r"""
$parameters = @{
    Name = $in.name
    SamAccountName = $in.name
    Path = $in.container
    GroupScope = 'Global'
    GroupCategory = 'Security'
    PassThru = $true
}
$group = New-ADGroup @parameters
$result = @{ sid = $group.SID.Value; distinguished_name = $group.DistinguishedName; sam_account_name = $group.SamAccountName }
"""

SET_GROUP_MEMBERS = r"""
$parameters = @{ Identity = $in.group }
if ($in.add.Count) { $parameters['Add'] = @{ member = [string[]]$in.add } }
if ($in.remove.Count) { $parameters['Remove'] = @{ member = [string[]]$in.remove } }
Set-ADGroup @parameters
"""

CREDENTIALS_VALID = r"""
Add-Type -AssemblyName System.DirectoryServices.AccountManagement
$context = New-Object -TypeName System.DirectoryServices.AccountManagement.PrincipalContext -ArgumentList 'Domain'
try { $result = @{ valid = $context.ValidateCredentials($in.username, $in.password, 'Negotiate') } }
finally { $context.Dispose() }
"""

# Reads as the identity, not as the connection's user: the question is whether the identity may. The blob is
# the gMSA's password: it leaves only encrypted to the controller's one-run RSA key (OAEP wraps a fresh AES key,
# AES-CBC the blob), so neither the output stream nor a transcript ever holds it.
READ_MANAGED_PASSWORD = r"""
$credential = New-Object -TypeName System.Management.Automation.PSCredential -ArgumentList $in.username, (ConvertTo-SecureText $in.password)
try {
    $account = Get-ADServiceAccount -Identity $in.object_guid -Properties 'msDS-ManagedPassword' -Credential $credential
}
catch [System.Security.Authentication.AuthenticationException] {
    $account = $null
    $result = @{ authenticated = $false; sealed_blob = $null }
}
if ($account) {
    $blob = $account.'msDS-ManagedPassword'
    $sealed = $null
    if ($blob) {
        $rsa = New-Object -TypeName System.Security.Cryptography.RSACryptoServiceProvider
        $rsa.FromXmlString($in.recipient_key)
        $aes = New-Object -TypeName System.Security.Cryptography.AesCryptoServiceProvider
        $encryptor = $aes.CreateEncryptor()
        $ciphertext = $encryptor.TransformFinalBlock($blob, 0, $blob.Length)
        $sealed = @{
            key = [Convert]::ToBase64String($rsa.Encrypt($aes.Key, $true))
            iv = [Convert]::ToBase64String($aes.IV)
            ciphertext = [Convert]::ToBase64String($ciphertext)
        }
        [Array]::Clear($blob, 0, $blob.Length)
        $encryptor.Dispose(); $aes.Dispose(); $rsa.Dispose()
    }
    $result = @{ authenticated = $true; sealed_blob = $sealed }
}
"""

# A batch runs an operation's body for each of ``$in.items`` (read as ``$item``) in one PowerShell, instead of one
# PowerShell (and ActiveDirectory module import) per account. The first failure stops it: the answer holds the
# result of each item carried out and the failure, and the Python side names what was and was not done.
BATCH_HEAD = r"""
$results = @()
$failure = $null
foreach ($item in $in.items) {
    try {
        foreach ($key in $itemKeys) {
            if ($null -eq $item.PSObject.Properties[$key]) { throw "an item of the input document lacks the key '$key'" }
        }
        $result = $null
"""

BATCH_TAIL = r"""
        $results += , $result
    }
    catch {
        $failure = @{ index = $results.Count; message = $_.Exception.Message; type = $_.Exception.GetType().FullName; id = $_.FullyQualifiedErrorId }
        break
    }
}
$result = @{ results = $results; failure = $failure }
"""


def for_each_item(body: str) -> str:
    """The batch body of an operation's ``body``: the same script run for each ``$item`` of ``$in.items``."""
    return BATCH_HEAD + body.replace("$in.", "$item.") + BATCH_TAIL


# The body of each operation with the helper functions it needs; the WinRM endpoint of the tests keys on it.
OPERATIONS = {
    "domain_facts": DOMAIN_FACTS,
    "container_exists": CONTAINER_EXISTS,
    "find_gmsas": GMSA_FUNCTIONS + FIND_GMSAS,
    "create_gmsa": GMSA_FUNCTIONS + CREATE_GMSA,
    "update_gmsa": GMSA_FUNCTIONS + UPDATE_GMSA,
    "delete_gmsa": DELETE_GMSA,
    "create_gmsas": GMSA_FUNCTIONS + for_each_item(CREATE_GMSA),
    "update_gmsas": GMSA_FUNCTIONS + for_each_item(UPDATE_GMSA),
    "delete_gmsas": for_each_item(DELETE_GMSA),
    "resolve_principals": RESOLVE_PRINCIPALS,
    "kds_root_keys": KDS_FUNCTIONS + KDS_ROOT_KEYS,
    "create_kds_root_key": KDS_FUNCTIONS + CREATE_KDS_ROOT_KEY,
    "find_user": USER_FUNCTIONS + FIND_USER,
    "create_user": USER_FUNCTIONS + CREATE_USER,
    "update_user": USER_FUNCTIONS + UPDATE_USER,
    "delete_user": DELETE_USER,
    "create_group": CREATE_GROUP,
    "set_group_members": SET_GROUP_MEMBERS,
    "credentials_valid": CREDENTIALS_VALID,
    "read_managed_password": READ_MANAGED_PASSWORD,
}


_INPUT_KEY = re.compile(r"\$in\.([A-Za-z_]+)")


def input_keys(operation: str) -> list[str]:
    """The keys of ``$in`` that the script of ``operation`` reads: the wrapper refuses input that lacks one."""
    return sorted(set(_INPUT_KEY.findall(OPERATIONS[operation])))


# The batch operations and the operation each runs per item.
BATCHES = {"create_gmsas": "create_gmsa", "update_gmsas": "update_gmsa", "delete_gmsas": "delete_gmsa"}


def build_script(operation: str) -> str:
    """The complete script for ``operation``: check ``$in``, pin the DC, run the body, print the JSON result."""
    keys = ", ".join(f"'{key}'" for key in input_keys(operation))
    item_keys = ", ".join(f"'{key}'" for key in input_keys(BATCHES[operation])) if operation in BATCHES else ""
    return f"$inputKeys = @({keys}); $itemKeys = @({item_keys})" + WRAPPER_HEAD + OPERATIONS[operation] + WRAPPER_TAIL
