# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""PowerShell run by the WinRM transport, kept as constants because AnsiballZ ships only Python.

Every operation is one script body wrapped by :func:`build_script`. The body never contains a value: its input
arrives on standard input as one ASCII JSON document (non-ASCII as ``\\uXXXX``), read into ``$in`` with
``ConvertFrom-Json``, and the AD cmdlets get those values as parameters or as variables in ``-Filter`` (which
the ActiveDirectory module evaluates itself), so quotes, ``$()``, backticks or ``;`` in a name stay data. A
body sets ``$result``; the wrapper prints ``{"result": ...}`` or ``{"error": {...}}`` as ASCII JSON, because
WinRM shells use code page 437 and would mangle anything else.
"""

from __future__ import annotations

WRAPPER_HEAD = r"""
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Write-AsciiJson($Value) {
    $json = ConvertTo-Json -InputObject $Value -Depth 6 -Compress
    [regex]::Replace($json, '[^\x00-\x7F]', { param($match) '\u{0:x4}' -f [int][char]$match.Value })
}
try {
    $in = [Console]::In.ReadToEnd() | ConvertFrom-Json
    Import-Module ActiveDirectory
    $result = $null
    $null = . {
"""

WRAPPER_TAIL = r"""
    }
    Write-AsciiJson @{ result = $result }
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

FIND_GMSAS = r"""
$accounts = foreach ($name in $in.names) {
    $samAccountName = $name + '$'
    Get-ADServiceAccount -Filter 'sAMAccountName -eq $samAccountName' -Properties $gmsaProperties |
        ForEach-Object { ConvertTo-GmsaResult $_ }
}
$result = @{ accounts = @($accounts) }
"""

# Who may retrieve the password goes through the cmdlets' own parameter (SIDs), which writes the descriptor.
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
if ($replace.Count) { $parameters['Replace'] = $replace }
if ($in.clear.Count) { $parameters['Clear'] = [string[]]$in.clear }
if ($null -ne $in.enabled) { $parameters['Enabled'] = $in.enabled }
if ($null -ne $in.password_readers) {
    $readers = if ($in.password_readers.Count) { [string[]]$in.password_readers } else { $null }
    $parameters['PrincipalsAllowedToRetrieveManagedPassword'] = $readers
}
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

KDS_ROOT_KEYS = r"""
$keys = Get-KdsRootKey | ForEach-Object { @{
    key_id = $_.KeyId.ToString()
    created = ([DateTimeOffset]$_.CreationTime).ToUnixTimeSeconds()
    effective_time = ([DateTimeOffset]$_.EffectiveTime).ToUnixTimeSeconds()
} }
$result = @{ keys = @($keys) }
"""

CREATE_KDS_ROOT_KEY = r"""
$effectiveTime = [DateTimeOffset]::FromUnixTimeSeconds($in.effective_time).UtcDateTime
$keyId = Add-KdsRootKey -EffectiveTime $effectiveTime
$key = Get-KdsRootKey | Where-Object { $_.KeyId -eq $keyId }
$result = @{
    key_id = $key.KeyId.ToString()
    created = ([DateTimeOffset]$key.CreationTime).ToUnixTimeSeconds()
    effective_time = ([DateTimeOffset]$key.EffectiveTime).ToUnixTimeSeconds()
}
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

CREATE_USER = r"""
$parameters = @{
    Name = $in.name
    SamAccountName = $in.name
    UserPrincipalName = $in.name + '@' + (Get-ADDomain).DNSRoot
    Path = $in.container
    AccountPassword = ConvertTo-SecureString -String $in.password -AsPlainText -Force
    Enabled = $in.enabled
    PasswordNeverExpires = $in.password_never_expires
    PassThru = $true
}
if ($in.description) { $parameters['Description'] = $in.description }
$created = New-ADUser @parameters
$result = ConvertTo-UserResult (Get-ADUser -Identity $created.ObjectGUID -Properties $userProperties)
"""

UPDATE_USER = r"""
if ($null -ne $in.password) {
    $password = ConvertTo-SecureString -String $in.password -AsPlainText -Force
    Set-ADAccountPassword -Identity $in.sid -Reset -NewPassword $password
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

# Reads as the identity, not as the connection's user: the question is whether the identity may.
READ_MANAGED_PASSWORD = r"""
$password = ConvertTo-SecureString -String $in.password -AsPlainText -Force
$credential = New-Object -TypeName System.Management.Automation.PSCredential -ArgumentList $in.username, $password
try {
    $account = Get-ADServiceAccount -Identity $in.object_guid -Properties 'msDS-ManagedPassword' -Credential $credential
    $blob = $account.'msDS-ManagedPassword'
    $result = @{ authenticated = $true; blob = if ($blob) { [Convert]::ToBase64String($blob) } else { $null } }
}
catch [System.Security.Authentication.AuthenticationException] {
    $result = @{ authenticated = $false; blob = $null }
}
"""

# The body of each operation with the helper functions it needs; the WinRM endpoint of the tests keys on it.
OPERATIONS = {
    "domain_facts": DOMAIN_FACTS,
    "container_exists": CONTAINER_EXISTS,
    "find_gmsas": GMSA_FUNCTIONS + FIND_GMSAS,
    "create_gmsa": GMSA_FUNCTIONS + CREATE_GMSA,
    "update_gmsa": GMSA_FUNCTIONS + UPDATE_GMSA,
    "delete_gmsa": DELETE_GMSA,
    "resolve_principals": RESOLVE_PRINCIPALS,
    "kds_root_keys": KDS_ROOT_KEYS,
    "create_kds_root_key": CREATE_KDS_ROOT_KEY,
    "find_user": USER_FUNCTIONS + FIND_USER,
    "create_user": USER_FUNCTIONS + CREATE_USER,
    "update_user": USER_FUNCTIONS + UPDATE_USER,
    "delete_user": DELETE_USER,
    "create_group": CREATE_GROUP,
    "set_group_members": SET_GROUP_MEMBERS,
    "credentials_valid": CREDENTIALS_VALID,
    "read_managed_password": READ_MANAGED_PASSWORD,
}


def build_script(operation: str) -> str:
    """The complete script for ``operation``: read ``$in``, run the body, print the JSON result."""
    return WRAPPER_HEAD + OPERATIONS[operation] + WRAPPER_TAIL
