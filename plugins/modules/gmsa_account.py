#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gmsa_account
short_description: Manage group Managed Service Accounts in Active Directory from the controller
version_added: 0.1.0
description:
  - Creates, updates and deletes gMSAs (C(msDS-GroupManagedServiceAccount) objects), several in one task, as
    C(New-ADServiceAccount) and C(Set-ADServiceAccount) would.
  - Every account is validated, every principal and container looked up, before anything is changed. Each
    account is then written with a single directory operation (a recreation is a delete, then a create), so
    an account is never left half-changed.
  - A KDS root key must exist before a gMSA is created. The module checks that first, and with O(kds_root_key)
    creates one when the forest has none, in the same task (as M(wincontainers.gmsa.gmsa_kds_root_key) would).
  - With O(check_retrievals), the task then proves from the controller that the portable identities can retrieve
    the passwords and get tickets as the gMSAs, as M(wincontainers.gmsa.gmsa_domain_info) does, over the same
    connection. Not in check mode, where the accounts may not exist yet.
  - The list options (O(accounts[].spn), O(accounts[].allowed_to_retrieve_password),
    O(accounts[].kerberos_encryption_types)) take C(add), C(remove) and C(set) as in
    M(microsoft.ad.service_account).
options:
  accounts:
    description:
      - The gMSAs to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the gMSA, which is its C(sAMAccountName) without the trailing C($), its C(cn) and its host
            name.
          - At most 15 characters, none of C("/\\[]:;|=,+*?<>@) or spaces. A trailing C($) is accepted and
            dropped.
          - Unless O(accounts[].dns_hostname) is given, the name must also be a valid DNS name (letters, digits,
            inner C(-)), because the default host name and SPNs are made from it.
        type: str
        required: true
      state:
        description:
          - V(present) creates or updates the account, V(absent) deletes it.
        type: str
        choices: [present, absent]
        default: present
      dns_hostname:
        description:
          - The C(dNSHostName) of the account.
          - Defaults to C(NAME.<domain DNS name>) when the account is created; an existing account keeps its
            value unless this is given.
        type: str
      spn:
        description:
          - Service principal names (C(servicePrincipalName)), as C(serviceclass/host[:port][/servicename]).
          - A new account starts with C(host/NAME) and C(host/<dns_hostname>), unless C(set) is given. When
            O(accounts[].dns_hostname) is given, NAME is its first label.
          - Compared case-insensitively, as AD does.
        type: dict
        aliases: [spns]
        suboptions:
          add:
            description: SPNs to add.
            type: list
            elements: str
          remove:
            description: SPNs to remove.
            type: list
            elements: str
          set:
            description: The complete list of SPNs; an empty list removes them all.
            type: list
            elements: str
      allowed_to_retrieve_password:
        description:
          - Users, groups or computers allowed to retrieve the managed password
            (C(PrincipalsAllowedToRetrieveManagedPassword), stored in C(msDS-GroupMSAMembership)).
          - Each is a C(sAMAccountName) (a computer with its C($)), a SID or a distinguished name. An unknown
            principal fails the task before any change.
          - For Windows containers this is the portable identity (M(wincontainers.gmsa.gmsa_identity)) or a
            group holding it; Microsoft recommends one group per gMSA.
          - A new account starts with nobody allowed, unless C(set) or C(add) is given.
        type: dict
        suboptions:
          add:
            description: Principals to allow.
            type: list
            elements: str
          remove:
            description: Principals to disallow.
            type: list
            elements: str
          set:
            description: The complete list of principals; an empty list allows nobody.
            type: list
            elements: str
      kerberos_encryption_types:
        description:
          - Kerberos encryption types the account supports (C(msDS-SupportedEncryptionTypes)).
          - A new account gets V(aes128) and V(aes256), unless C(set) is given. Avoid V(rc4).
        type: dict
        suboptions:
          add:
            description: Encryption types to add.
            type: list
            elements: str
            choices: [aes128, aes256, rc4]
          remove:
            description: Encryption types to remove.
            type: list
            elements: str
            choices: [aes128, aes256, rc4]
          set:
            description: The complete list of encryption types.
            type: list
            elements: str
            choices: [aes128, aes256, rc4]
      password_interval_days:
        description:
          - Days between password changes (C(msDS-ManagedPasswordInterval)).
          - AD accepts it only when the account is created, so a different value for an existing account fails
            the task, unless O(accounts[].recreate) is set.
          - Defaults to 30 on creation.
        type: int
      recreate:
        description:
          - Delete and create the account again when O(accounts[].password_interval_days) differs from the
            existing account's.
          - The new account has a new SID and password; credential specs and hosts that use it must follow.
          - It keeps the container, SPNs, password readers, DNS host name, encryption types, description and
            state of the old one, except what the task changes.
          - Those settings are written to a file in O(recreate_state_dir) on the controller before the delete
            and removed once the new account exists, so that when creating it fails after the delete, a rerun
            of the task with the same O(recreate_state_dir) creates it again with them.
        type: bool
        default: false
      path:
        description:
          - Distinguished name of the container or OU that receives a new account.
          - Defaults to C(CN=Managed Service Accounts) of the domain. An existing account is not moved.
        type: str
      description:
        description:
          - The C(description) of the account; an empty string removes it. Left as it is when omitted.
        type: str
      enabled:
        description:
          - Whether the account is enabled. A new account is enabled unless this is V(false).
        type: bool
  identities:
    description:
      - Portable identities (M(wincontainers.gmsa.gmsa_identity)) brought to their options in the same task, before
        the accounts, each as that module's O(wincontainers.gmsa.gmsa_identity#module:name) and options would, over
        the same connection (one module run for the whole domain side).
      - Each identity may retrieve the passwords of the accounts its O(identities[].accounts) lists. With
        O(identities[].groups) and O(identities[].create_groups), name the groups in
        O(accounts[].allowed_to_retrieve_password) instead (Microsoft's one group per gMSA).
      - Checked all before any change, with the accounts. They are written before the accounts are compared
        with AD (an account names them, or the groups they join, as readers), so a failure in the accounts names
        the identities this task changed before it.
      - In check mode an identity or group the task would create has no SID yet; the accounts are predicted
        without it.
    type: list
    elements: dict
    suboptions:
      name:
        description: C(sAMAccountName) of the user (also its C(cn)).
        type: str
        required: true
      accounts:
        description:
          - Names of accounts of O(accounts) whose passwords this identity may retrieve. Its SID is added to their
            O(accounts[].allowed_to_retrieve_password) (as with C(add)).
          - A name that is not in O(accounts) fails the task before any change.
        type: list
        elements: str
        default: []
      state:
        description: V(present) creates or updates the user, V(absent) deletes it.
        type: str
        choices: [present, absent]
        default: present
      password:
        description:
          - Password of the user; required to create it. Never shown in the output, the diff or the logs.
        type: str
      update_password:
        description: As O(wincontainers.gmsa.gmsa_identity#module:update_password).
        type: str
        choices: [always, on_create]
        default: on_create
      password_never_expires:
        description: Whether the password never expires.
        type: bool
        default: true
      enabled:
        description: Whether the account is enabled.
        type: bool
        default: true
      path:
        description:
          - Distinguished name of the container or OU that receives a new user. Defaults to C(CN=Users) of the
            domain.
        type: str
      description:
        description: The C(description) of the user; an empty string removes it. Left as it is when omitted.
        type: str
      groups:
        description: As O(wincontainers.gmsa.gmsa_identity#module:groups).
        type: dict
        suboptions:
          add:
            description: Groups to join.
            type: list
            elements: str
          remove:
            description: Groups to leave.
            type: list
            elements: str
          set:
            description: The complete list of groups.
            type: list
            elements: str
      create_groups:
        description: As O(wincontainers.gmsa.gmsa_identity#module:create_groups).
        type: bool
        default: false
      groups_path:
        description: As O(wincontainers.gmsa.gmsa_identity#module:groups_path).
        type: str
  kds_root_key:
    description:
      - What to do about the forest's KDS root key when the task creates a gMSA, checked before any change. With
        O(kds_root_key.create), create a key when the forest has none; otherwise fail, naming the missing key.
      - When omitted, a task that would create a gMSA in a forest without a key fails before any change.
      - The key is looked up only when an account is to be created; a run that creates none leaves it alone.
      - Keys are never deleted (see M(wincontainers.gmsa.gmsa_kds_root_key)).
    type: dict
    suboptions:
      create:
        description:
          - Create a key when the forest has none. With V(false), only check that one exists.
        type: bool
        default: true
      lab_mode:
        description:
          - Back-date a new key's effective time by 10 hours so that DCs use it at once. Only for a lab with a
            single DC, as O(wincontainers.gmsa.gmsa_kds_root_key#module:lab_mode).
        type: bool
        default: false
  recreate_state_dir:
    description:
      - Directory on the controller where a recreate keeps the old account's settings between the delete and
        the create (see O(accounts[].recreate)). Point it at storage that outlives the job when jobs run in
        throw-away containers (AWX execution environments).
    type: path
    default: ~/.ansible/wincontainers.gmsa/recreate
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - wincontainers.gmsa.domain_connection
  - wincontainers.gmsa.retrieval_checks
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: wincontainers.gmsa.gmsa_kds_root_key
  - module: wincontainers.gmsa.gmsa_identity
  - module: wincontainers.gmsa.gmsa_domain_info
  - module: microsoft.ad.service_account
    description: The same object managed from a Windows host.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: One gMSA per application, readable by the portable identity's group
  wincontainers.gmsa.gmsa_account:
    domain_transport: ldap
    domain_server: dc01.contoso.com
    domain_username: CONTOSO\gmsa-admin
    domain_password: "{{ vault_gmsa_admin_password }}"
    accounts:
      - name: WebApp01
        allowed_to_retrieve_password:
          set: [WebApp01-Hosts]
      - name: Billing
        spn:
          add: [HTTP/billing.contoso.com]
        allowed_to_retrieve_password:
          set: [Billing-Hosts]

- name: A new forest - the KDS root key and the gMSAs in one task
  wincontainers.gmsa.gmsa_account:
    kds_root_key:
      create: true
    accounts:
      - name: WebApp01
        allowed_to_retrieve_password:
          set: [WebApp01-Hosts]
  register: gmsas

- name: Say when DCs use a key this task created (10 hours after its creation)
  ansible.builtin.debug:
    msg: "gMSA passwords can be retrieved from {{ gmsas.kds_root_key.usable_from }}"
  when: gmsas.kds_root_key is defined and not gmsas.kds_root_key.usable

- name: The domain side of a cluster in one task - the key, the portable identity and the gMSAs it may read
  wincontainers.gmsa.gmsa_account:
    kds_root_key:
      create: true
    identities:
      - name: gmsa-ccg-web
        password: "{{ vault_ccg_web_password }}"
        accounts: [WebApp01, Billing]
    accounts:
      - name: WebApp01
      - name: Billing

- name: Remove an account
  wincontainers.gmsa.gmsa_account:
    accounts:
      - name: OldApp
        state: absent
  module_defaults:
    group/wincontainers.gmsa.domain:
      domain_server: dc01.contoso.com
      domain_username: CONTOSO\gmsa-admin
      domain_password: "{{ vault_gmsa_admin_password }}"
"""

RETURN = r"""
kds_root_key:
  description:
    - The forest's KDS root key, when the task was to create an account and O(kds_root_key) was given; the key DCs
      use (the newest usable one, else the one usable first), or the key the task created (C(key_id) is null in check
      mode).
  returned: when O(kds_root_key) is given and an account is to be created
  type: dict
  contains:
    key_id:
      description: The key's ID.
      type: str
      sample: 4e5bd7c1-6c65-4a2f-8d8b-2d1c5b0a2c11
    effective_time:
      description: The key's effective time (UTC, ISO 8601).
      type: str
      sample: "2026-11-28T12:28:53+00:00"
    usable_from:
      description: When DCs start using the key, 10 hours after its effective time (UTC, ISO 8601).
      type: str
      sample: "2026-11-28T22:28:53+00:00"
    usable:
      description: Whether DCs use the key now.
      type: bool
      sample: true
    changed:
      description: Whether the task created the key.
      type: bool
      sample: false
accounts:
  description: Each account of O(accounts), in order, as it is after the task (as it would be, in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the gMSA (without C($)).
      type: str
      sample: WebApp01
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    changed:
      description: Whether this account was (or would be) changed.
      type: bool
    sam_account_name:
      description: The C(sAMAccountName), with C($).
      type: str
      sample: WebApp01$
    distinguished_name:
      description: Distinguished name; null when absent, or not yet created in check mode.
      type: str
      sample: CN=WebApp01,CN=Managed Service Accounts,DC=contoso,DC=com
    sid:
      description: SID of the account (not the domain's); null when absent, or not yet created in check mode.
      type: str
      sample: S-1-5-21-2126449477-2524075714-3094792973-1108
    object_guid:
      description: C(objectGUID); null when absent, or not yet created in check mode.
      type: str
      sample: 5f1e3b47-1c2c-4d8e-9b47-2d6f3a2b9f10
    dns_hostname:
      description: C(dNSHostName).
      type: str
      sample: WebApp01.contoso.com
    spns:
      description: Service principal names.
      type: list
      elements: str
      sample: [host/WebApp01, host/WebApp01.contoso.com]
    allowed_to_retrieve_password:
      description: SIDs of the principals allowed to retrieve the password.
      type: list
      elements: str
      sample: [S-1-5-21-2126449477-2524075714-3094792973-1105]
    kerberos_encryption_types:
      description: Supported Kerberos encryption types.
      type: list
      elements: str
      sample: [aes128, aes256]
    password_interval_days:
      description: Days between password changes.
      type: int
      sample: 30
    description:
      description: The description, or null.
      type: str
    enabled:
      description: Whether the account is enabled.
      type: bool
identities:
  description:
    - With O(identities), each user in order, as M(wincontainers.gmsa.gmsa_identity) returns them in its
      C(identities) result (C(name), C(state), C(sid), C(distinguished_name), C(enabled), C(password_never_expires),
      C(description), C(groups), C(password_changed), C(created_groups), C(changed)).
  returned: when O(identities) is given
  type: list
  elements: dict
  sample:
    - name: gmsa-ccg-web
      state: present
      changed: false
      sid: S-1-5-21-2126449477-2524075714-3094792973-1105
      distinguished_name: CN=gmsa-ccg-web,CN=Users,DC=contoso,DC=com
      enabled: true
      password_never_expires: true
      description: null
      groups: []
      password_changed: false
      created_groups: []
retrievals:
  description:
    - With O(check_retrievals), one entry per identity, in order, as M(wincontainers.gmsa.gmsa_domain_info) returns
      them in its C(retrievals) result.
  returned: when O(check_retrievals) is given, except in check mode
  type: list
  elements: dict
  contains:
    username:
      description: The identity.
      type: str
    retrieval:
      description:
        - One entry per gMSA (C(account), C(identity_authenticated), C(password_readable), C(kerberos_ticket), C(ok),
          C(detail)), stopping at the first step that fails.
      type: list
      elements: dict
    retrieval_ok:
      description: Whether every check of this identity succeeded.
      type: bool
retrieval_ok:
  description: Whether every retrieval check succeeded.
  returned: when O(check_retrievals) is given, except in check mode
  type: bool
domain:
  description:
    - Facts of the domain the accounts are in, as M(wincontainers.gmsa.gmsa_domain_info) returns them in its C(domain)
      result (C(distinguished_name), C(dns_name), C(dns_tree_name), C(netbios_name), C(sid), C(guid)).
    - What credential specs need, read once with the accounts.
  returned: success
  type: dict
  sample:
    distinguished_name: DC=contoso,DC=com
    dns_name: contoso.com
    dns_tree_name: contoso.com
    netbios_name: CONTOSO
    sid: S-1-5-21-2126449477-2524075714-3094792973
    guid: 244818ae-87ca-4fcd-92ec-e79e5252348a
"""

import dataclasses
import datetime
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DEFAULT_ENCRYPTION_TYPES,
    DEFAULT_PASSWORD_INTERVAL_DAYS,
    ENCRYPTION_TYPES,
    BatchFailed,
    DomainClient,
    DomainError,
    DomainFacts,
    GmsaAccount,
    GmsaCreation,
    GmsaSettings,
    KdsRootKeyPlan,
    apply_list_changes,
    check_container,
    container_or_default,
    create_planned_kds_root_key,
    domain_argument_spec,
    encryption_type_names,
    encryption_types_value,
    gmsa_attribute_changes,
    kds_root_key_warning,
    list_option_spec,
    list_option_values,
    open_domain_client,
    plan_kds_root_key,
    settings_facts,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._identity import USER_OPTIONS, UserBatch, validate_users
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._retrieval import (
    RETRIEVAL_OPTIONS,
    checked_accounts,
    kds_root_key_facts,
    prove_retrievals,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    validate_distinguished_name,
    validate_dns_name,
    validate_gmsa_name,
    validate_host_name_source,
    validate_principal,
    validate_spn,
)

ACCOUNT_OPTIONS = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    dns_hostname=dict(type="str"),
    spn=dict(list_option_spec(), aliases=["spns"]),
    allowed_to_retrieve_password=dict(list_option_spec(), no_log=False),
    kerberos_encryption_types=list_option_spec(choices=list(ENCRYPTION_TYPES)),
    password_interval_days=dict(type="int", no_log=False),
    recreate=dict(type="bool", default=False),
    path=dict(type="str"),
    description=dict(type="str"),
    enabled=dict(type="bool"),
)

IDENTITY_OPTIONS = dict(
    USER_OPTIONS,
    name=dict(type="str", required=True),
    accounts=dict(type="list", elements="str", default=[]),
)

KDS_ROOT_KEY_OPTIONS = dict(
    create=dict(type="bool", default=True),
    lab_mode=dict(type="bool", default=False),
)


def validate_accounts(accounts: list[dict]) -> None:
    """Check every account's input and normalize ``name``; raise ValidationError naming the field."""
    seen = {}
    for index, account in enumerate(accounts):
        field = f"accounts[{index}]"
        account["name"] = validate_gmsa_name(account["name"], f"{field}.name")
        key = account["name"].lower()
        if key in seen:
            raise ValidationError(f"{field}.name", f"{account['name']!r} is also accounts[{seen[key]}]; list each account once")
        seen[key] = index
        if account["dns_hostname"] is not None:
            validate_dns_name(account["dns_hostname"], f"{field}.dns_hostname")
        elif account["state"] == "present":
            validate_host_name_source(account["name"], f"{field}.name")
        for suffix, spn in list_option_values(account["spn"]):
            validate_spn(spn, f"{field}.spn.{suffix}")
        for suffix, principal in list_option_values(account["allowed_to_retrieve_password"]):
            validate_principal(principal, f"{field}.allowed_to_retrieve_password.{suffix}")
        if account["path"] is not None:
            validate_distinguished_name(account["path"], f"{field}.path")
        if account["password_interval_days"] is not None and account["password_interval_days"] < 1:
            raise ValidationError(f"{field}.password_interval_days", "must be at least 1 day")


def validate_identities(identities: list[dict], accounts: list[dict]) -> None:
    """Check the identities as gmsa_identity would, and that each names only gMSAs of ``accounts`` (validated before)."""
    validate_users(identities, "identities")
    known = {account["name"].lower() for account in accounts}
    for index, identity in enumerate(identities):
        for position, name in enumerate(identity["accounts"]):
            field = f"identities[{index}].accounts[{position}]"
            identity["accounts"][position] = name = validate_gmsa_name(name, field)
            if name.lower() not in known:
                raise ValidationError(field, f"{name!r} is not one of the accounts of this task; an identity may be allowed only gMSAs the task manages")


def grant_identities(accounts: list[dict], identities: UserBatch, check_mode: bool) -> None:
    """Allow each identity to retrieve the passwords of the accounts it lists (its SID joins their
    ``allowed_to_retrieve_password.add``). In check mode, an identity or group the task would create has no SID yet:
    the accounts are predicted without it, also where they name it themselves."""
    readers: dict[str, list[str]] = {}
    for identity, result in zip(identities.users, identities.results):
        if result["state"] == "present" and result["sid"]:
            for name in identity["accounts"]:
                readers.setdefault(name.lower(), []).append(result["sid"])
    pending = set()
    if check_mode:
        pending = {group.lower() for result in identities.results for group in result["created_groups"]}
        pending |= {result["name"].lower() for result in identities.results if result["state"] == "present" and not result["sid"]}
    for account in accounts:
        changes = dict(account["allowed_to_retrieve_password"] or {})
        for suboption in ("set", "add"):
            if changes.get(suboption) is not None and pending:
                changes[suboption] = [principal for principal in changes[suboption] if principal.lower() not in pending]
        if readers.get(account["name"].lower()):
            changes["add"] = [*(changes.get("add") or []), *readers[account["name"].lower()]]
        account["allowed_to_retrieve_password"] = changes or None


class PendingRecreate:
    """The settings and container of an account deleted to be recreated, until the new one exists (in ``directory``)."""

    def __init__(self, directory: str, domain_sid: str, name: str) -> None:
        self.path = os.path.join(directory, f"{domain_sid}-{name.lower()}.json")

    def read(self) -> tuple[str, GmsaSettings] | None:
        try:
            with open(self.path, encoding="utf-8") as pending_file:
                record = json.load(pending_file)
        except FileNotFoundError:
            return None
        values = record["settings"]
        return record["container"], GmsaSettings(**dict(values, spns=tuple(values["spns"]), password_readers=tuple(values["password_readers"])))

    def write(self, account: GmsaAccount) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        container = account.distinguished_name.split(",", 1)[1]  # a gMSA name holds no comma
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as pending_file:
            json.dump({"container": container, "settings": dataclasses.asdict(account.settings)}, pending_file)

    def remove(self) -> None:
        # Not exists-then-unlink: another run of the same accounts may remove it in between.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def account_result(name: str, account: GmsaAccount | None, settings: GmsaSettings | None, interval: int | None) -> dict:
    """What the module returns for one account (``account`` None when absent or not yet created)."""
    result = dict(
        name=name,
        state="present" if settings else "absent",
        sam_account_name=f"{name}$",
        distinguished_name=account and account.distinguished_name,
        sid=account and account.sid,
        object_guid=account and account.object_guid,
    )
    if settings:
        result.update(settings_facts(settings), password_interval_days=interval)
    return result


class AccountPlan:
    """What one entry of ``accounts`` asks for, compared with what is in AD."""

    def __init__(
        self, field: str, request: dict, existing: GmsaAccount | None, principals: dict, facts: DomainFacts, recreate_state_dir: str
    ) -> None:
        self.field = field
        # AD's spelling once the account exists: names are case-insensitive, results should not flip case.
        self.name = existing.name if existing else request["name"]
        self.request = request
        self.existing = existing
        self.pending = PendingRecreate(recreate_state_dir, facts.sid, self.name)
        # An account a failed recreate deleted: created again as it was, with what the task changes.
        self.restoring = None if existing or request["state"] == "absent" else self.pending.read()
        self.desired = None if request["state"] == "absent" else self._desired_settings(principals, facts.dns_name)
        self.interval = self._interval()
        self.container = self._container(facts)
        self.deleted = False  # set once apply() has deleted the account (to recreate it, or for good)

    def _desired_settings(self, principals: dict, domain_dns_name: str) -> GmsaSettings:
        request = self.request
        current = self.existing.settings if self.existing else self.restoring and self.restoring[1]
        dns_host_name = request["dns_hostname"] or (current.dns_host_name if current else f"{self.name}.{domain_dns_name}")
        readers = {
            suffix: None if values is None else [principals[value].sid for value in values]
            for suffix, values in (request["allowed_to_retrieve_password"] or {}).items()
        }
        if current:
            spns, readers_now, encryption = list(current.spns), list(current.password_readers), encryption_type_names(current.encryption_types)
        else:
            # A name that is no valid host name gets its host/NAME from the dns_hostname it had to be given with.
            short_name = dns_host_name.split(".")[0] if request["dns_hostname"] else self.name
            spns, readers_now, encryption = [f"host/{short_name}", f"host/{dns_host_name}"], [], list(DEFAULT_ENCRYPTION_TYPES)
        description = request["description"] if request["description"] is not None else current and current.description
        enabled = request["enabled"] if request["enabled"] is not None else (current.enabled if current else True)
        return GmsaSettings(
            dns_host_name=dns_host_name,
            spns=tuple(sorted(apply_list_changes(spns, request["spn"]), key=str.lower)),
            password_readers=tuple(apply_list_changes(readers_now, readers, key=str.upper)),
            encryption_types=encryption_types_value(apply_list_changes(encryption, request["kerberos_encryption_types"])),
            description=description or None,
            enabled=enabled,
        )

    def _interval(self) -> int:
        requested = self.request["password_interval_days"]
        if self.existing is None:
            return requested or DEFAULT_PASSWORD_INTERVAL_DAYS
        current = self.existing.password_interval_days
        if requested is not None and requested != current and not self.request["recreate"]:
            raise ValidationError(
                f"{self.field}.password_interval_days",
                f"{self.name} exists with a password interval of {current} days and AD sets it only at creation; "
                f"keep {current}, or set recreate to delete and create the account (new SID and password)",
            )
        return requested or current

    def _container(self, facts: DomainFacts) -> str | None:
        """Where the account is created, if it is: ``path``, the default, or where a recreated one was."""
        if self.recreate:
            # The name cannot contain a comma, so the parent DN follows the first one.
            return self.existing.distinguished_name.split(",", 1)[1]
        if self.desired and self.existing is None:
            if self.restoring and not self.request["path"]:
                return self.restoring[0]
            return container_or_default(self.request["path"], facts, "CN=Managed Service Accounts")
        return None

    @property
    def recreate(self) -> bool:
        return bool(self.existing and self.desired and self.interval != self.existing.password_interval_days)

    @property
    def changed(self) -> bool:
        if self.desired is None:
            return self.existing is not None
        if self.existing is None or self.recreate:
            return True
        replace, clear = gmsa_attribute_changes(self.existing.settings, self.desired)
        return bool(replace or clear) or self.existing.settings.enabled != self.desired.enabled

    @property
    def action(self) -> str:
        """What applying the plan does, as the failure report of a batch names it."""
        if self.recreate:
            return "recreated"
        return "deleted" if self.desired is None else "created" if self.existing is None else "changed"

    def apply(self, client: DomainClient) -> GmsaAccount | None:
        """Make the change, each step a single directory operation; return the account as it is now."""
        if self.recreate:
            self.pending.write(self.existing)
        if self.existing and (self.desired is None or self.recreate):
            client.delete_gmsa(self.existing)
            self.deleted = True
        if self.container:
            account = client.create_gmsa(self.name, self.container, self.interval, self.desired)
            self.pending.remove()
            return account
        return None if self.desired is None else client.update_gmsa(self.existing, self.desired)

    def result(self, account: GmsaAccount | None) -> dict:
        return account_result(self.name, account if self.desired else None, self.desired, self.interval)

    def before(self) -> dict:
        existing = self.existing
        return account_result(self.name, existing, existing and existing.settings, existing and existing.password_interval_days)


def resolve_principals(client: DomainClient, accounts: list[dict]) -> dict:
    """Look up every principal named in ``allowed_to_retrieve_password``; fail on the first unknown one."""
    wanted = [
        (f"accounts[{index}].allowed_to_retrieve_password.{suffix}", value)
        for index, account in enumerate(accounts)
        for suffix, value in list_option_values(account["allowed_to_retrieve_password"])
    ]
    principals = client.resolve_principals(sorted({value for _field, value in wanted}))
    for field, value in wanted:
        if value not in principals:
            raise ValidationError(field, f"no user, group or computer {value!r} in the domain (give a sAMAccountName, SID or distinguished name)")
    return principals


def plan_accounts(
    client: DomainClient, facts: DomainFacts, accounts: list[dict], recreate_state_dir: str, kds_root_key: dict | None, now: datetime.datetime
) -> tuple[list[AccountPlan], KdsRootKeyPlan | None]:
    """Compare every account with AD and check what creating them needs, the KDS root key included, all before any
    change. Returns the plans and, when ``kds_root_key`` is given and an account is to be created, the key's plan."""
    principals = resolve_principals(client, accounts)
    existing = client.find_gmsas([account["name"] for account in accounts])
    plans = [
        AccountPlan(f"accounts[{index}]", account, existing.get(account["name"].lower()), principals, facts, recreate_state_dir)
        for index, account in enumerate(accounts)
    ]
    creations = [plan for plan in plans if plan.container]
    kds_plan = None
    if creations and kds_root_key is not None:
        kds_plan = plan_kds_root_key(client, kds_root_key["create"], kds_root_key["lab_mode"], now, "kds_root_key.create")
    elif creations and not client.kds_root_keys():
        raise DomainError(
            f"{client.server}: the forest has no KDS root key, so DCs cannot compute gMSA passwords; create one first with "
            "wincontainers.gmsa.gmsa_kds_root_key, or let this task create it (kds_root_key)"
        )
    checked = set()
    for plan in creations:
        if plan.container.lower() not in checked:
            checked.add(check_container(client, plan.container, f"{plan.field}.path").lower())
    return plans, kds_plan


def apply_plans(client: DomainClient, plans: list[AccountPlan], applied: dict) -> None:
    """Write what the changed ``plans`` ask for: deletions, creations and updates each in one batch, recreations one by
    one (each keeps its journal). ``applied`` gets each plan whose write is made, mapped to its account as it is now
    (None when deleted, or not read back); after a failure it holds what was done before it."""
    deletions = [plan for plan in plans if plan.desired is None]
    creations = [plan for plan in plans if plan.existing is None]
    updates = [plan for plan in plans if plan.existing and plan.desired and not plan.recreate]
    batches = (
        (deletions, lambda: client.delete_gmsas([plan.existing for plan in deletions]) or [None] * len(deletions)),
        (creations, lambda: client.create_gmsas([GmsaCreation(plan.name, plan.container, plan.interval, plan.desired) for plan in creations])),
        (updates, lambda: client.update_gmsas([(plan.existing, plan.desired) for plan in updates])),
    )
    try:
        for batch, write in batches:
            if not batch:
                continue
            try:
                applied.update(zip(batch, write()))
            except BatchFailed as failed:
                applied.update((plan, None) for plan in batch[:failed.done])
                name = batch[failed.done].name
                raise DomainError(str(failed) if name in str(failed) else f"{batch[failed.done].action} {name}: {failed}") from None
    finally:
        # An account restored after a failed recreate exists again: its journal has served.
        for plan in creations:
            if plan in applied:
                plan.pending.remove()
    for plan in plans:
        if plan.recreate:
            applied[plan] = plan.apply(client)


def main() -> None:
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            accounts=dict(type="list", elements="dict", required=True, options=ACCOUNT_OPTIONS),
            identities=dict(type="list", elements="dict", options=IDENTITY_OPTIONS),
            check_retrievals=dict(type="list", elements="dict", options=RETRIEVAL_OPTIONS),
            recreate_state_dir=dict(type="path", default="~/.ansible/wincontainers.gmsa/recreate"),
            # A KDS root key's options (whether to create one), not key material.
            kds_root_key=dict(type="dict", options=KDS_ROOT_KEY_OPTIONS, no_log=False),
        ),
        supports_check_mode=True,
    )
    accounts = module.params["accounts"]
    identities = UserBatch(module.params["identities"] or [], "identities")
    checks = module.params["check_retrievals"]
    plans, applied, domain, kds_plan, kds_created, proven = [], {}, {}, None, False, {}
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        validate_accounts(accounts)
        validate_identities(identities.users, accounts)
        retrieval_accounts = checked_accounts([(check, f"check_retrievals[{index}]") for index, check in enumerate(checks or [])])
        with open_domain_client(module.params, warn=module.warn) as client:
            facts = client.domain_facts()
            # Returned for the credspecs, so a playbook need not read them again with gmsa_domain_info.
            domain = dataclasses.asdict(facts)
            # The identities first: the accounts name them (and the groups they join) as password readers.
            identities.ensure(module.check_mode, client)
            grant_identities(accounts, identities, module.check_mode)
            plans, kds_plan = plan_accounts(client, facts, accounts, module.params["recreate_state_dir"], module.params["kds_root_key"], now)
            if not module.check_mode:
                if kds_plan is not None and kds_plan.create:
                    kds_plan, kds_created = create_planned_kds_root_key(client, kds_plan), True
                apply_plans(client, [plan for plan in plans if plan.changed], applied)
                if checks is not None:
                    # The chain as this task left it; in check mode its accounts may not exist yet.
                    key_usable = any(key["usable"] for key in kds_root_key_facts(client, now))
                    found = client.find_gmsas(sorted(set().union(*retrieval_accounts), key=str.lower))
                    retrievals = prove_retrievals(module.run_command, client, facts, checks, retrieval_accounts, found, key_usable)
                    proven = dict(retrievals=retrievals, retrieval_ok=all(retrieval["retrieval_ok"] for retrieval in retrievals))
    except (DomainError, ValidationError) as error:
        # A batch that fails midway says what it changed before (those changes are made and stay made) and what it
        # did not attempt.
        done = [f"changed the identity {name}" for name in identities.changed if not module.check_mode]
        done += ["created the KDS root key"] if kds_created else []
        done += [f"{plan.action} {plan.name}" for plan in plans if plan in applied]
        done += [f"deleted {plan.name} to recreate it (a rerun creates it again)" for plan in plans if plan.deleted and plan not in applied]
        untouched = [plan.name for plan in plans if plan.changed and plan not in applied and not plan.deleted]
        if identities.reached is not None and len(identities.results) <= identities.reached:
            # Failed among the identities: what they changed, and those not reached.
            message = identities.failure(error)
        else:
            message = f"{error}; before the failure, this task {', '.join(done)}" if done else str(error)
        if untouched and applied:
            message += f"; not changed: {', '.join(untouched)}"
        results, diff = _results([plan for plan in plans if plan in applied], applied, lambda plan: True)
        module.fail_json(msg=message, changed=bool(done), accounts=results, diff=diff, **_identity_results(module.params, identities))
    results, diff = _results(plans, applied, lambda plan: plan.changed)
    for result in identities.results:
        if result["changed"]:
            # Not a name an account can have (a sAMAccountName holds no space).
            diff["before"][f"identity {result['name']}"] = identities.before[result["name"]]
            diff["after"][f"identity {result['name']}"] = identities.after[result["name"]]
    extra, kds_changed = dict(_identity_results(module.params, identities), **proven), False
    if kds_plan is not None:
        key, kds_changed = kds_plan.facts(now), kds_plan.create
        extra["kds_root_key"] = dict(key, changed=kds_changed)
        if kds_changed:
            diff["before"]["KDS root key"], diff["after"]["KDS root key"] = {}, key
            if warning := kds_root_key_warning(key):
                module.warn(warning)
    changed = any(result["changed"] for result in results) or kds_changed or bool(identities.changed)
    module.exit_json(changed=changed, accounts=results, domain=domain, diff=diff, **extra)


def _identity_results(params: dict, identities: UserBatch) -> dict:
    """The ``identities`` return value, when the option was given."""
    return dict(identities=identities.results) if params["identities"] is not None else {}


def _results(plans: list[AccountPlan], applied: dict, changed) -> tuple[list[dict], dict]:
    """The module's ``accounts`` and ``diff``: accounts as they are now where written (``applied``), else as planned."""
    results, diff_before, diff_after = [], {}, {}
    for plan in plans:
        account = applied.get(plan, plan.existing)
        results.append(dict(plan.result(account), changed=changed(plan)))
        if changed(plan):
            diff_before[plan.name] = plan.before()
            diff_after[plan.name] = plan.result(account)
    return results, dict(before=diff_before, after=diff_after)


if __name__ == "__main__":
    main()
