# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The retrieval chain ccg.exe relies on inside a Windows node, proven from the controller: the portable identity
authenticates, reads a gMSA's password, and the gMSA gets a Kerberos ticket with it.

Shared by ``gmsa_domain_info`` (``check_retrieval``, ``check_retrievals``) and ``gmsa_account`` (``check_retrievals``,
the chain proven in the task that made it).
"""

from __future__ import annotations

import datetime

from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._client import AuthenticationFailed
from ansible_collections.wincontainers.gmsa.plugins.module_utils.domain._gmsa_password import BlobError, request_ticket
from ansible_collections.wincontainers.gmsa.plugins.module_utils._validation import validate_gmsa_name

# The checks of one portable identity.
RETRIEVAL_OPTIONS = dict(
    username=dict(type="str", required=True),
    password=dict(type="str", required=True, no_log=True),
    accounts=dict(type="list", elements="str", required=True),
    kerberos_ticket=dict(type="bool", default=True),
)


def checked_accounts(checks: list[tuple[dict, str]]) -> list[list[str]]:
    """The gMSA names of each check (``(options, field)``), validated before the domain is contacted."""
    return [[validate_gmsa_name(name, f"{field}.accounts[{index}]") for index, name in enumerate(check["accounts"])] for check, field in checks]


def kds_root_key_facts(client, now: datetime.datetime) -> list[dict]:
    return [
        dict(key_id=key.key_id, effective_time=key.effective_time.isoformat(), usable_from=key.usable_from.isoformat(), usable=key.usable_from <= now)
        for key in client.kds_root_keys()
    ]


def check_retrieval(run_command, client, facts, account_name: str, account, check: dict, key_usable: bool) -> dict:
    """Identity authenticates -> reads the password -> the gMSA gets a TGT; stop at the first failure."""
    result = dict(account=account_name, identity_authenticated=False, password_readable=False, kerberos_ticket="skipped", ok=False)
    if account is None:
        return dict(result, detail=f"the gMSA {account_name} does not exist")
    try:
        blob = client.read_managed_password(account, check["username"], check["password"])
    except AuthenticationFailed as error:
        return dict(result, detail=f"the identity {check['username']} cannot authenticate: {error}")
    result["identity_authenticated"] = True
    if blob is None:
        if not key_usable:
            # gmsa_account shares this check and has no kds_root_keys result: say where to look.
            return dict(result, detail="no KDS root key is usable yet, so DCs cannot compute gMSA passwords (gmsa_domain_info's kds_root_keys says when)")
        return dict(result, detail=f"{check['username']} may not retrieve the password of {account_name} (allowed_to_retrieve_password)")
    result["password_readable"] = True
    if not check["kerberos_ticket"]:
        return dict(result, ok=True, detail=f"{check['username']} retrieved the password of {account_name}")
    try:
        ticket = request_ticket(run_command, account.name, facts.dns_name.upper(), facts.dns_name, blob)
    except BlobError as error:
        return dict(result, kerberos_ticket="failed", detail=str(error))
    return dict(result, kerberos_ticket=ticket.status, ok=ticket.status != "failed", detail=ticket.detail)


def prove_retrievals(run_command, client, facts, checks: list[dict], checked: list[list[str]], found: dict, key_usable: bool) -> list[dict]:
    """Each identity's chain for each of its gMSAs (``found``: the gMSAs by lower-case name); ``retrieval_ok`` per
    identity."""
    retrievals = []
    for check, accounts in zip(checks, checked):
        retrieval = [check_retrieval(run_command, client, facts, name, found.get(name.lower()), check, key_usable) for name in accounts]
        retrievals.append(dict(username=check["username"], retrieval=retrieval, retrieval_ok=all(item["ok"] for item in retrieval)))
    return retrievals
