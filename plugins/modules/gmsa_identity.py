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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import DomainError, domain_argument_spec, list_option_spec, open_domain_client
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._identity import USER_OPTIONS, UserBatch, validate_users
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError


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
            **USER_OPTIONS,
        ),
        mutually_exclusive=[("name", "identities")],
        required_one_of=[("name", "identities")],
        supports_check_mode=True,
    )
    batch = UserBatch(identity_params(module.params), "identities" if module.params["identities"] is not None else None)
    try:
        validate_users(batch.users, batch.option)
        with open_domain_client(module.params, warn=module.warn) as client:
            batch.ensure(module.check_mode, client)
    except (DomainError, ValidationError) as error:
        module.fail_json(msg=batch.failure(error), changed=bool(batch.changed), **(dict(identities=batch.results) if batch.option else {}))
    if batch.option:
        module.exit_json(changed=bool(batch.changed), identities=batch.results, diff=dict(before=batch.before, after=batch.after))
    result = batch.results[0]
    module.exit_json(**result, diff=dict(before=batch.before[result["name"]], after=batch.after[result["name"]]))


if __name__ == "__main__":
    main()
