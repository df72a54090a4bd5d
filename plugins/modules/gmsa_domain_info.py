#!/usr/bin/python
# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gmsa_domain_info
short_description: Domain facts for credential specs, gMSA details and a password retrieval check
version_added: 0.1.0
description:
  - Returns the facts a credential spec needs (domain SID, GUID, DNS name, forest root, NetBIOS name), in the
    shape M(wincontainers.gmsa.gmsa_credspec) takes them.
  - Describes gMSAs and the forest's KDS root keys.
  - With O(check_retrieval), proves from the controller the chain ccg.exe relies on inside a Windows node.
    The portable identity authenticates, it may read the gMSA's password, and the gMSA gets a Kerberos ticket
    with keys derived from that password.
options:
  accounts:
    description:
      - Names of gMSAs to describe (without C($)). Missing accounts are returned with O(accounts) C(exists=false).
    type: list
    elements: str
    default: []
  check_retrieval:
    description:
      - Authenticate as the portable identity and check each gMSA of O(check_retrieval.accounts), as each entry of
        O(check_retrievals) is checked. Excludes O(check_retrievals).
      - The Kerberos ticket request runs MIT C(kinit) on the controller against the KDC named by the Kerberos
        configuration (O(domain_krb5_config)); without C(kinit) that step is reported as skipped.
    type: dict
    suboptions:
      username:
        description: C(sAMAccountName) (or C(DOMAIN\\user)) of the portable identity.
        type: str
        required: true
      password:
        description: Password of the portable identity.
        type: str
        required: true
      accounts:
        description: gMSAs whose password the identity should be able to retrieve.
        type: list
        elements: str
        required: true
      kerberos_ticket:
        description: Also request a TGT as each gMSA.
        type: bool
        default: true
extends_documentation_fragment:
  - wincontainers.gmsa.attributes
  - ansible.builtin.action_common_attributes
  - wincontainers.gmsa.domain_connection
  - wincontainers.gmsa.retrieval_checks
attributes:
  check_mode:
    support: full
    details: The module changes nothing.
  diff_mode:
    support: none
seealso:
  - module: wincontainers.gmsa.gmsa_account
  - module: wincontainers.gmsa.gmsa_identity
author:
  - wincontainers.gmsa maintainers (@wincontainers)
"""

EXAMPLES = r"""
# Fragments: the names, domain facts and vault_* variables are placeholders for your own.
- name: Domain facts for the credential specs
  wincontainers.gmsa.gmsa_domain_info:
  register: ad

- name: Prove the identity can use the gMSA
  wincontainers.gmsa.gmsa_domain_info:
    check_retrieval:
      username: gmsa-ccg
      password: "{{ vault_ccg_password }}"
      accounts: [WebApp01]
  register: check

- name: Fail with the reason when it cannot
  ansible.builtin.assert:
    that: check.retrieval_ok
    fail_msg: "{{ check.retrieval | selectattr('ok', 'false') | map(attribute='detail') | join('; ') }}"

- name: Prove the identity of each namespace can use its gMSAs, in one task
  wincontainers.gmsa.gmsa_domain_info:
    check_retrievals:
      - username: gmsa-ccg-web
        password: "{{ vault_ccg_web_password }}"
        accounts: [WebApp01]
      - username: gmsa-ccg-billing
        password: "{{ vault_ccg_billing_password }}"
        accounts: [Billing01, Billing02]
  register: checks
"""

RETURN = r"""
domain:
  description: Facts of the domain, as credential specs use them.
  returned: always
  type: dict
  contains:
    distinguished_name:
      description: DN of the domain naming context.
      type: str
      sample: DC=contoso,DC=com
    dns_name:
      description: DNS name of the domain (C(DnsName) of a credential spec).
      type: str
      sample: contoso.com
    dns_tree_name:
      description: DNS name of the forest root domain (C(DnsTreeName)).
      type: str
      sample: contoso.com
    netbios_name:
      description: NetBIOS name of the domain (C(NetBiosName)).
      type: str
      sample: CONTOSO
    sid:
      description: SID of the domain (C(Sid)), not of any account.
      type: str
      sample: S-1-5-21-2126449477-2524075714-3094792973
    guid:
      description: objectGUID of the domain (C(Guid)).
      type: str
      sample: 244818ae-87ca-4fcd-92ec-e79e5252348a
kds_root_keys:
  description: The forest's KDS root keys.
  returned: always
  type: list
  elements: dict
  contains:
    key_id:
      description: Key ID.
      type: str
    effective_time:
      description: Effective time (UTC, ISO 8601).
      type: str
    usable_from:
      description: When DCs start using it, 10 hours after the effective time.
      type: str
    usable:
      description: Whether DCs use it now.
      type: bool
accounts:
  description: The gMSAs of O(accounts), with the fields M(wincontainers.gmsa.gmsa_account) returns and C(exists).
  returned: always
  type: list
  elements: dict
retrieval:
  description: One entry per gMSA of O(check_retrieval.accounts).
  returned: when O(check_retrieval) is given
  type: list
  elements: dict
  contains:
    account:
      description: The gMSA.
      type: str
    identity_authenticated:
      description: Whether the domain accepted the identity's password.
      type: bool
    password_readable:
      description: Whether the identity could read C(msDS-ManagedPassword).
      type: bool
    kerberos_ticket:
      description: V(ok), V(failed) or V(skipped).
      type: str
    ok:
      description: Whether every step that ran succeeded.
      type: bool
    detail:
      description: What failed, or what was proven.
      type: str
retrieval_ok:
  description: Whether every retrieval check succeeded (of every identity, with O(check_retrievals)).
  returned: when O(check_retrieval) or O(check_retrievals) is given
  type: bool
retrievals:
  description: With O(check_retrievals), one entry per identity, in order.
  returned: when O(check_retrievals) is given
  type: list
  elements: dict
  contains:
    username:
      description: The identity.
      type: str
    retrieval:
      description: Its checks, as RV(retrieval) gives them for O(check_retrieval).
      type: list
      elements: dict
    retrieval_ok:
      description: Whether every check of this identity succeeded.
      type: bool
"""

import dataclasses
import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import DomainError, domain_argument_spec, open_domain_client, settings_facts
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._retrieval import (
    RETRIEVAL_OPTIONS,
    checked_accounts,
    kds_root_key_facts,
    prove_retrievals,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import ValidationError, validate_gmsa_name


def describe_account(name: str, account) -> dict:
    if account is None:
        return dict(name=name, exists=False)
    return dict(
        name=account.name,
        exists=True,
        sam_account_name=account.sam_account_name,
        distinguished_name=account.distinguished_name,
        sid=account.sid,
        object_guid=account.object_guid,
        password_interval_days=account.password_interval_days,
        **settings_facts(account.settings),
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=domain_argument_spec(
            accounts=dict(type="list", elements="str", default=[]),
            check_retrieval=dict(type="dict", options=RETRIEVAL_OPTIONS),
            check_retrievals=dict(type="list", elements="dict", options=RETRIEVAL_OPTIONS),
        ),
        mutually_exclusive=[("check_retrieval", "check_retrievals")],
        supports_check_mode=True,
    )
    single = module.params["check_retrieval"]
    checks = [(single, "check_retrieval")] if single else [
        (check, f"check_retrievals[{index}]") for index, check in enumerate(module.params["check_retrievals"] or [])
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    result = {}
    try:
        names = [validate_gmsa_name(name, f"accounts[{index}]") for index, name in enumerate(module.params["accounts"])]
        checked = checked_accounts(checks)
        with open_domain_client(module.params, warn=module.warn) as client:
            facts = client.domain_facts()
            result["domain"] = dataclasses.asdict(facts)
            result["kds_root_keys"] = kds_root_key_facts(client, now)
            found = client.find_gmsas(sorted(set(names).union(*checked), key=str.lower))
            result["accounts"] = [describe_account(name, found.get(name.lower())) for name in names]
            key_usable = any(key["usable"] for key in result["kds_root_keys"])
            retrievals = prove_retrievals(module.run_command, client, facts, [check for check, _field in checks], checked, found, key_usable)
            if single:
                result.update(retrieval=retrievals[0]["retrieval"], retrieval_ok=retrievals[0]["retrieval_ok"])
            elif module.params["check_retrievals"] is not None:
                result.update(retrievals=retrievals, retrieval_ok=all(retrieval["retrieval_ok"] for retrieval in retrievals))
    except (DomainError, ValidationError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
