# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The retrieval chain of several portable identities, proven from the controller."""

    DOCUMENTATION = r"""
options:
  check_retrievals:
    description:
      - Prove from the controller the chain ccg.exe relies on inside a Windows node, for several portable identities
        (one per workload namespace, say) over one connection to the domain. Each identity authenticates and reads
        the password of each gMSA of its O(check_retrievals[].accounts), and each gMSA gets a Kerberos ticket with
        it.
      - The Kerberos ticket request runs MIT C(kinit) on the controller against the KDC named by the Kerberos
        configuration (O(domain_krb5_config)); without C(kinit) that step is reported as skipped.
      - The outcome is reported in RV(retrievals) and RV(retrieval_ok); a check that fails does not fail the task.
    type: list
    elements: dict
    suboptions:
      username:
        description: C(sAMAccountName) (or C(DOMAIN\\user)) of the portable identity.
        type: str
        required: true
      password:
        description: Password of the portable identity. Never shown in the output or the logs.
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
"""
