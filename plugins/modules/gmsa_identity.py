#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gmsa_identity
short_description: Manage the portable identity, the domain user whose credentials Windows nodes use to fetch gMSA passwords
version_added: 0.1.0
description:
  - Non-domain-joined Windows nodes retrieve a gMSA password through the Container Credential Guard (ccg.exe),
    authenticated as a standard domain user whose credentials sit in a Kubernetes Secret. This module manages
    that user, C(New-ADUser) and C(Set-ADUser) style, and its group membership.
  - The user needs no rights beyond being allowed to retrieve the gMSA passwords (directly or through a group,
    see O(wincontainers.gmsa.gmsa_account#module:accounts[].allowed_to_retrieve_password)).
options:
  name:
    description:
      - C(sAMAccountName) of the user (also its C(cn)).
      - Exactly one of O(name) and O(identities) is required.
    type: str
  identities:
    description:
      - Several users in one task, one connection to the domain (one portable identity per namespace, say), each
        managed as O(name) would be. An entry's keys override the options of the same name for it; the other
        options apply to every entry.
      - Checked all before any change. A failure midway names the users this task changed before it, and those
        it did not reach.
    type: list
    elements: dict
    suboptions:
      name:
        description: C(sAMAccountName) of the user.
        type: str
        required: true
      password:
        description: Password of the user, as O(password). Never shown in the output, the diff or the logs.
        type: str
      description:
        description: As O(description).
        type: str
      path:
        description: As O(path).
        type: str
      groups:
        description: As O(groups).
        type: dict
        suboptions: &group_changes
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
  state:
    description:
      - V(present) creates or updates the user, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  password:
    description:
      - Password of the user; required to create it. It must satisfy the domain's password policy.
      - Never shown in the output, the diff or the logs.
    type: str
  update_password:
    description:
      - V(on_create) sets the password only when the user is created.
      - V(always) also sets it when the domain does not accept O(password) for the user (checked by
        authenticating as the user, so an unchanged password reports no change).
    type: str
    choices: [always, on_create]
    default: on_create
  password_never_expires:
    description:
      - Whether the password never expires. The Secret holding it is not rotated by the domain, so V(true) is
        the default.
    type: bool
    default: true
  enabled:
    description:
      - Whether the account is enabled.
    type: bool
    default: true
  path:
    description:
      - Distinguished name of the container or OU that receives a new user. Defaults to C(CN=Users) of the
        domain. An existing user is not moved.
    type: str
  description:
    description:
      - The C(description) of the user; an empty string removes it. Left as it is when omitted.
    type: str
  groups:
    description:
      - Groups the user is a direct member of, each as C(sAMAccountName), SID or distinguished name. The groups
        must exist, unless O(create_groups) is set.
      - C(set) leaves the user in exactly those groups (its primary group, C(Domain Users), is not listed and
        never changed).
    type: dict
    suboptions: *group_changes
  create_groups:
    description:
      - Create the groups of O(groups.add) and O(groups.set) that do not exist, as global security groups in
        O(groups_path). Only groups given by name can be created.
      - Microsoft recommends one security group per gMSA, holding what may retrieve its password; this creates
        them along with the identity's membership.
    type: bool
    default: false
  groups_path:
    description:
      - Distinguished name of the container or OU that receives the groups O(create_groups) creates. Defaults
        to C(CN=Users) of the domain.
    type: str
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - wincontainers.gmsa.domain_connection
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
seealso:
  - module: wincontainers.gmsa.gmsa_account
  - module: wincontainers.gmsa.gmsa_domain_info
    description: Checks that the identity may retrieve a gMSA password.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Portable identity in the group allowed to retrieve the gMSA passwords
  wincontainers.gmsa.gmsa_identity:
    name: gmsa-ccg
    password: "{{ vault_ccg_password }}"
    description: Portable identity of the Windows nodes (Kubernetes)
    groups:
      add: [WebApp01-Hosts]

- name: One group per gMSA, created along with the membership (Microsoft's recommended pattern)
  wincontainers.gmsa.gmsa_identity:
    name: gmsa-ccg
    password: "{{ vault_ccg_password }}"
    groups:
      add: [WebApp01-gMSA-Hosts, Billing-gMSA-Hosts]
    create_groups: true
    groups_path: OU=gMSA Groups,DC=contoso,DC=com

- name: Reset the password when the domain no longer accepts the one in the vault
  wincontainers.gmsa.gmsa_identity:
    name: gmsa-ccg
    password: "{{ vault_ccg_password }}"
    update_password: always

- name: One portable identity per namespace, in one task
  wincontainers.gmsa.gmsa_identity:
    identities:
      - name: gmsa-ccg-web
        password: "{{ vault_ccg_web_password }}"
        groups:
          add: [WebApp01-gMSA-Hosts]
      - name: gmsa-ccg-billing
        password: "{{ vault_ccg_billing_password }}"
        groups:
          add: [Billing-gMSA-Hosts]
    create_groups: true
"""

RETURN = r"""
identities:
  description:
    - With O(identities), each user in order, as the other return values describe one (C(name), C(state), C(sid),
      C(distinguished_name), C(enabled), C(password_never_expires), C(description), C(groups),
      C(password_changed), C(created_groups)), with C(changed).
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
      groups: [CN=WebApp01-gMSA-Hosts,CN=Users,DC=contoso,DC=com]
      password_changed: false
      created_groups: []
name:
  description: C(sAMAccountName) of the user (with O(name)).
  returned: with O(name)
  type: str
  sample: gmsa-ccg
state:
  description: V(present) or V(absent).
  returned: with O(name)
  type: str
sid:
  description: SID of the user; null when absent, or not yet created in check mode.
  returned: with O(name)
  type: str
  sample: S-1-5-21-2126449477-2524075714-3094792973-1105
distinguished_name:
  description: Distinguished name; null when absent, or not yet created in check mode.
  returned: with O(name)
  type: str
  sample: CN=gmsa-ccg,CN=Users,DC=contoso,DC=com
enabled:
  description: Whether the account is enabled.
  returned: with O(name), when state is present
  type: bool
password_never_expires:
  description: Whether the password never expires.
  returned: with O(name), when state is present
  type: bool
description:
  description: The description, or null.
  returned: with O(name), when state is present
  type: str
groups:
  description: Distinguished names of the groups the user is a direct member of.
  returned: with O(name), when state is present
  type: list
  elements: str
password_changed:
  description: Whether the password was (or would be) set.
  returned: with O(name)
  type: bool
created_groups:
  description: Names of the groups O(create_groups) created (or would create, in check mode).
  returned: with O(name)
  type: list
  elements: str
  sample: [WebApp01-gMSA-Hosts]
"""

from dataclasses import dataclass

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DomainError,
    DomainUser,
    apply_list_changes,
    check_container,
    container_or_default,
    domain_argument_spec,
    list_option_spec,
    list_option_values,
    open_domain_client,
    principal_lookup_attribute,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._ldap import escape_dn_value
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import (
    ValidationError,
    validate_distinguished_name,
    validate_principal,
    validate_user_name,
)


def validate_params(params: dict) -> None:
    """Check the names and paths of one user before the domain is contacted; raise ValidationError naming the option."""
    validate_user_name(params["name"], "name")
    for option in ("path", "groups_path"):
        if params[option] is not None:
            validate_distinguished_name(params[option], option)
    for field, value in list_option_values(params["groups"]):
        validate_principal(value, f"groups.{field}")


def user_result(name: str, user: DomainUser | None, desired: dict | None) -> dict:
    result = dict(name=name, state="present" if desired else "absent", sid=user and user.sid, distinguished_name=user and user.distinguished_name)
    if desired:
        result.update(desired)
    return result


class GroupPlan:
    """The ``groups`` option resolved to DNs, and the groups to create first (with ``create_groups``)."""

    def __init__(self, client, params: dict) -> None:
        self.to_create: list[str] = []
        self.container = None
        self.dns = None
        groups = params["groups"]
        if not groups:
            return
        values = list_option_values(groups)
        principals = client.resolve_principals(sorted({value for _field, value in values}))
        dns = {value: principal.distinguished_name for value, principal in principals.items()}
        for field, value in values:
            if value in dns:
                continue
            if not params["create_groups"]:
                raise ValidationError(
                    f"groups.{field}", f"no group {value!r} in the domain (give a sAMAccountName, SID or distinguished name, or set create_groups)"
                )
            if field.startswith("remove"):
                continue  # a group that does not exist has no member to remove
            if principal_lookup_attribute(value) != "sAMAccountName":
                raise ValidationError(f"groups.{field}", f"no group {value!r} in the domain; create_groups creates groups given by name only")
            self.container = self.container or check_container(
                client, container_or_default(params["groups_path"], client.domain_facts(), "CN=Users"), "groups_path"
            )
            self.to_create.append(value)
            dns[value] = f"CN={escape_dn_value(value)},{self.container}"
        self.dns = {suboption: None if names is None else [dns[name] for name in names if name in dns] for suboption, names in groups.items()}

    def create(self, client) -> None:
        for name in self.to_create:
            client.create_group(name, self.container)


def desired_state(params: dict, user: DomainUser | None, groups: dict | None) -> dict:
    current_description = user.description if user else None
    return dict(
        enabled=params["enabled"],
        password_never_expires=params["password_never_expires"],
        description=(params["description"] if params["description"] is not None else current_description) or None,
        groups=apply_list_changes(list(user.groups) if user else [], groups),
    )


def current_state(user: DomainUser) -> dict:
    return dict(enabled=user.enabled, password_never_expires=user.password_never_expires, description=user.description, groups=list(user.groups))


def missing(values: list[str], among: list[str]) -> list[str]:
    """The DNs of ``values`` that are not in ``among``, compared case-insensitively as AD compares DNs."""
    known = {value.lower() for value in among}
    return [value for value in values if value.lower() not in known]


@dataclass
class Outcome:
    changed: bool
    password_changed: bool
    user: DomainUser | None
    desired: dict
    created_groups: list[str]


def ensure_present(params: dict, check_mode: bool, client, user: DomainUser | None) -> Outcome:
    """Create or update the user, and create the groups it joins when asked to."""
    container = None
    if user is None:
        if not params["password"]:
            raise ValidationError("password", f"is required to create the user {params['name']}")
        container = check_container(client, container_or_default(params["path"], client.domain_facts(), "CN=Users"), "path")
    groups = GroupPlan(client, params)
    desired = desired_state(params, user, groups.dns)
    current = current_state(user) if user else dict(groups=[])
    password_changed = user is None or (
        params["update_password"] == "always" and bool(params["password"]) and not client.credentials_valid(params["name"], params["password"])
    )
    attributes_changed = any(current.get(key) != desired[key] for key in ("enabled", "password_never_expires", "description"))
    join, leave = missing(desired["groups"], current["groups"]), missing(current["groups"], desired["groups"])
    changed = password_changed or attributes_changed or bool(join or leave or groups.to_create)
    if not changed or check_mode:
        return Outcome(changed, password_changed, user, desired, groups.to_create)
    groups.create(client)
    if user is None:
        user = client.create_user(params["name"], container, params["password"], desired["description"], desired["enabled"], desired["password_never_expires"])
    elif password_changed or attributes_changed:
        user = client.update_user(
            user,
            description=desired["description"],
            enabled=desired["enabled"],
            password_never_expires=desired["password_never_expires"],
            password=params["password"] if password_changed else None,
        )
    for group in join:
        client.set_group_members(group, add=[user.distinguished_name], remove=[])
    for group in leave:
        client.set_group_members(group, add=[], remove=[user.distinguished_name])
    return Outcome(changed, password_changed, user, desired, groups.to_create)


def ensure(params: dict, check_mode: bool, client) -> tuple[dict, dict, dict]:
    """Bring one user to ``params``: its result (with ``changed``, ``password_changed``, ``created_groups``), and the
    diff's before and after."""
    name = params["name"]
    existing = client.find_user(name)
    before = user_result(name, existing, current_state(existing)) if existing else {}
    if params["state"] == "absent":
        if existing and not check_mode:
            client.delete_user(existing)
        return dict(user_result(name, None, None), changed=bool(existing), password_changed=False, created_groups=[]), before, {}
    outcome = ensure_present(params, check_mode, client, existing)
    result = user_result(name, outcome.user, outcome.desired)
    # The diff says that the password changes, never what it is.
    after = dict(result, password="(changed)") if outcome.password_changed else result
    return dict(result, changed=outcome.changed, password_changed=outcome.password_changed, created_groups=outcome.created_groups), before, after


def identity_params(params: dict) -> list[dict]:
    """The options of each user: O(name) alone, or each entry of O(identities) over the module's options."""
    if params["identities"] is None:
        return [params]
    return [dict(params, **{key: value for key, value in entry.items() if value is not None}) for entry in params["identities"]]


def main() -> None:
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            name=dict(type="str"),
            identities=dict(
                type="list",
                elements="dict",
                options=dict(
                    name=dict(type="str", required=True),
                    password=dict(type="str", no_log=True),
                    description=dict(type="str"),
                    path=dict(type="str"),
                    groups=list_option_spec(),
                ),
            ),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            password=dict(type="str", no_log=True),
            update_password=dict(type="str", choices=["always", "on_create"], default="on_create", no_log=False),
            password_never_expires=dict(type="bool", default=True, no_log=False),
            enabled=dict(type="bool", default=True),
            path=dict(type="str"),
            description=dict(type="str"),
            groups=list_option_spec(),
            create_groups=dict(type="bool", default=False),
            groups_path=dict(type="str"),
        ),
        mutually_exclusive=[("name", "identities")],
        required_one_of=[("name", "identities")],
        supports_check_mode=True,
    )
    batch = module.params["identities"] is not None
    users = identity_params(module.params)
    results: list[dict] = []
    diff: dict = dict(before={}, after={})
    reached = None  # the index of the user being handled when the domain was contacted
    try:
        for index, params in enumerate(users):
            _checked(batch, index, validate_params, params)
        names = [params["name"].lower() for params in users]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValidationError("identities", f"each user may be named once; {', '.join(duplicates)} is named more than once")
        with open_domain_client(module.params, warn=module.warn) as client:
            for reached, params in enumerate(users):
                result, before, after = _checked(batch, reached, ensure, params, module.check_mode, client)
                results.append(result)
                diff["before"][params["name"]], diff["after"][params["name"]] = before, after
    except (DomainError, ValidationError) as error:
        changed = [result["name"] for result in results if result["changed"]]
        message = str(error)
        if changed:
            message += f"; before the failure, this task changed {', '.join(changed)}"
        if batch and reached is not None and reached + 1 < len(users):
            message += f"; not reached: {', '.join(params['name'] for params in users[reached + 1:])}"
        module.fail_json(msg=message, changed=bool(changed), **(dict(identities=results) if batch else {}))
    if batch:
        module.exit_json(changed=any(result["changed"] for result in results), identities=results, diff=diff)
    result = results[0]
    module.exit_json(**result, diff=dict(before=diff["before"][result["name"]], after=diff["after"][result["name"]]))


def _checked(batch: bool, index: int, function, *args):
    """``function(*args)``, with the field of a ValidationError under ``identities[index]`` for an entry of O(identities)."""
    try:
        return function(*args)
    except ValidationError as error:
        raise error.within(f"identities[{index}]") if batch else error from None


if __name__ == "__main__":
    main()
