#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gmsa_kds_root_key
short_description: Ensure the forest has a KDS root key, so that DCs can compute gMSA passwords
version_added: 0.1.0
description:
  - Creates a KDS root key (C(Add-KdsRootKey)) when the forest has none, and reports when the key DCs will use
    becomes usable.
  - A DC uses a root key only 10 hours after its effective time, to let the key replicate to every DC. In
    production the new key is effective now and the module says when it becomes usable, with a warning; in
    O(lab_mode) it is back-dated by 10 hours so that it is usable at once.
  - Keys are never deleted, because Microsoft warns that removing a root key breaks the gMSAs that use it.
options:
  create:
    description:
      - Create a key when the forest has none.
      - With V(false) the module only checks, and fails when there is no key; for forests where only the
        directory team creates keys.
    type: bool
    default: true
  lab_mode:
    description:
      - Back-date the effective time of a new key by 10 hours so that DCs use it at once (C(Add-KdsRootKey
        -EffectiveTime ((Get-Date).AddHours(-10)))).
      - Only for a lab with a single DC; in a forest with several DCs, a DC that has not replicated the key yet
        fails every gMSA password request.
    type: bool
    default: false
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - wincontainers.gmsa.domain_connection
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Needs Domain Admins or Enterprise Admins rights in the forest root domain.
seealso:
  - module: wincontainers.gmsa.gmsa_account
  - module: microsoft.ad.kds_root_key
    description: The same from a Windows host.
author:
  - wincontainers.gmsa maintainers (@wincontainers)
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Production forest, key effective now and usable in 10 hours
  wincontainers.gmsa.gmsa_kds_root_key:
  register: kds

- name: Stop here when the key is not usable yet
  ansible.builtin.assert:
    that: kds.usable
    fail_msg: "The KDS root key becomes usable at {{ kds.usable_from }}"

- name: Lab with a single DC
  wincontainers.gmsa.gmsa_kds_root_key:
    lab_mode: true

- name: Only check that the directory team created a key
  wincontainers.gmsa.gmsa_kds_root_key:
    create: false
"""

RETURN = r"""
key_id:
  description: ID of the key DCs use (or will use first); null in check mode when a key would be created.
  returned: always
  type: str
  sample: 32d6a09c-d5b0-2ae8-49de-001d1d46c5c0
effective_time:
  description: Effective time of that key (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2026-11-28T12:28:53+00:00"
usable_from:
  description: When DCs start using that key, 10 hours after its effective time (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2026-11-28T22:28:53+00:00"
usable:
  description: Whether DCs use the key now, so that gMSA passwords can be retrieved.
  returned: always
  type: bool
  sample: true
"""

import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import (
    DomainError,
    create_planned_kds_root_key,
    domain_argument_spec,
    kds_root_key_warning,
    open_domain_client,
    plan_kds_root_key,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=domain_argument_spec(create=dict(type="bool", default=True), lab_mode=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        with open_domain_client(module.params, warn=module.warn) as client:
            plan = plan_kds_root_key(client, module.params["create"], module.params["lab_mode"], now, "create")
            if plan.create and not module.check_mode:
                plan = create_planned_kds_root_key(client, plan)
    except DomainError as error:
        module.fail_json(msg=str(error))
    result = plan.facts(now)
    if not plan.create:
        module.exit_json(changed=False, **result, diff=dict(before=result, after=result))
    if warning := kds_root_key_warning(result):
        module.warn(warning)
    module.exit_json(changed=True, **result, diff=dict(before={}, after=result))


if __name__ == "__main__":
    main()
