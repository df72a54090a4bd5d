# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the verify role: turn what each check observed into check results, and results into the report.

Every filter returns *check results* as ``plugins/module_utils/_windows_checks.py`` defines them (``check``,
``state`` passed/failed/not_verifiable, ``summary``, ``details``, ``cause``, ``hint``), so the report treats
controller-side and in-pod checks alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.module_utils._credspec import diff_credspec
from ansible_collections.wincontainers.gmsa.plugins.module_utils._windows_checks import (
    DNS,
    FAILED,
    IDENTITY,
    PASSED,
    Cause,
    check_result,
    not_verifiable,
    parse_in_pod_check,
    verification_report,
)

_CREDSPEC_MISMATCH = Cause(
    "credspec",
    "The GMSACredentialSpec in the cluster no longer matches Active Directory (domain SID/GUID/names or the account). "
    "Rerun the cluster stage with overwrite, then restart the pods that use it: running containers keep the old spec.",
)
_ADMISSION = Cause(
    "webhook",
    "The windows-gmsa webhook did not decide as expected. Check that its pods are ready, that the webhook configurations "
    "cover the workload's namespace (the label windows.k8s.io/disabled=true opts a namespace out), and the RoleBinding "
    "that lets the service account use the credspec.",
)
_TICKET = Cause(
    "kerberos",
    "The domain refused a ticket for the gMSA with keys derived from its managed password. Check that the account is "
    "enabled, supports AES (msDS-SupportedEncryptionTypes) and that the KDS root key is usable.",
)


def _required_mapping(value: Any, filter_name: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{filter_name}: {what} must be a dict, got {type(value).__name__}")
    return value


def in_pod_check(output: str | Mapping[str, Any], check: str, domain: str, account: str | None = None) -> dict[str, Any]:
    """Read an in-pod check (``nltest /parentdomain``, ``nltest /sc_verify:<domain>``, ``klist get krbtgt``).

    ``output`` is the command's output, or the registered result of ``kubernetes.core.k8s_exec``: a command that could
    not run in the pod (no output) is a failure that says why, not an unreadable output.
    """
    if isinstance(output, Mapping):
        if output.get("failed") or not isinstance(output.get("stdout"), str):
            reason = output.get("msg") or output.get("stderr") or "the exec returned no output"
            return check_result(check, FAILED, f"could not run in the pod: {reason}", {"rc": output.get("rc")})
        output = output["stdout"]
    if not isinstance(output, str):
        raise AnsibleFilterError(f"in_pod_check: _input must be the command's output or a k8s_exec result, got {type(output).__name__}")
    try:
        return parse_in_pod_check(check, output, domain, account)
    except ValueError as error:
        raise AnsibleFilterError(f"in_pod_check: {error}") from None


def not_verifiable_check(check: str, reason: str) -> dict[str, Any]:
    """A check that nothing can run here, with the reason; the report never counts it as passed."""
    if not reason:
        raise AnsibleFilterError("not_verifiable_check: a reason is required")
    return not_verifiable(check, reason)


def retrieval_checks(retrieval: Sequence[Mapping[str, Any]], identity: str) -> list[dict[str, Any]]:
    """Checks from the ``retrieval`` result of ``gmsa_domain_info``: the identity's logon, then per gMSA its password and ticket."""
    if not isinstance(retrieval, Sequence) or isinstance(retrieval, (str, bytes)):
        raise AnsibleFilterError("retrieval_checks: _input must be the retrieval list of gmsa_domain_info")
    entries = [_required_mapping(entry, "retrieval_checks", "each retrieval entry") for entry in retrieval]
    if not entries:
        raise AnsibleFilterError("retrieval_checks: the retrieval list is empty; check_retrieval needs at least one account")
    refused = [entry for entry in entries if not entry.get("identity_authenticated")]
    logon = f"{identity} authenticates"
    results = [
        check_result(logon, FAILED, refused[0].get("detail") or "the domain refused the portable identity's password", {}, IDENTITY)
        if refused
        else check_result(logon, PASSED, "the domain accepted the portable identity's password", {})
    ]
    for entry in entries:
        account, detail = entry.get("account"), entry.get("detail") or ""
        details = {"account": account, "detail": detail}
        check = f"{identity} may read the password of {account}"
        if entry.get("password_readable"):
            results.append(check_result(check, PASSED, "msDS-ManagedPassword was returned to the identity", details))
        else:
            results.append(check_result(check, FAILED, detail or "msDS-ManagedPassword was not returned", details, IDENTITY))
        check = f"{account} gets a Kerberos ticket"
        ticket = entry.get("kerberos_ticket")
        if ticket == "ok":
            results.append(check_result(check, PASSED, "the KDC issued a TGT with keys derived from the retrieved password", details))
        elif ticket == "skipped":
            results.append(not_verifiable(check, detail or "no kinit on the controller"))
        else:
            results.append(check_result(check, FAILED, detail or "the KDC refused the gMSA a ticket", details, _TICKET))
    return results


def credspec_check(live: Mapping[str, Any] | None, expected: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Compare a GMSACredentialSpec object of the cluster (or None) with the spec built from Active Directory."""
    check = f"credspec {name} matches Active Directory"
    expected = _required_mapping(expected, "credspec_check", "expected")
    if not live:
        return check_result(check, FAILED, f"GMSACredentialSpec {name} does not exist in the cluster", {}, _CREDSPEC_MISMATCH)
    live_spec = _required_mapping(live, "credspec_check", "_input").get("credspec") or {}
    differences = diff_credspec(live_spec, expected)
    if differences:
        paths = sorted({difference["path"] for difference in differences})
        return check_result(check, FAILED, f"differs in {', '.join(paths)}", {"differences": differences}, _CREDSPEC_MISMATCH)
    account = expected.get("DomainJoinConfig", {}).get("MachineAccountName")
    domain = expected.get("DomainJoinConfig", {}).get("DnsName")
    return check_result(check, PASSED, f"names {account} in {domain} with the domain's SID and GUID", {})


def workload_dns_check(pod_spec: Mapping[str, Any] | None, dns_servers: Sequence[str], domain: str, workload: str) -> dict[str, Any]:
    """Whether a workload's pods resolve through the domain controllers and search the domain."""
    check = f"DNS of {workload} points at the domain controllers"
    if not pod_spec:
        return check_result(check, FAILED, f"{workload} was not found in the cluster", {})
    pod_spec = _required_mapping(pod_spec, "workload_dns_check", "_input")
    dns_config = pod_spec.get("dnsConfig") or {}
    nameservers = list(dns_config.get("nameservers") or [])
    searches = [search.lower().rstrip(".") for search in dns_config.get("searches") or []]
    wanted = [str(ipaddress.ip_address(server)) for server in dns_servers or []]
    details = {"dns_policy": pod_spec.get("dnsPolicy", "ClusterFirst"), "nameservers": nameservers, "searches": searches, "domain_controllers": wanted}
    problems = []
    if not wanted:
        problems.append("no domain controller address is configured to compare with (gmsa_domain_controllers)")
    missing = [server for server in wanted if server not in nameservers]
    if missing:
        problems.append(f"nameservers lack the domain controllers {', '.join(missing)}")
    if domain.lower().rstrip(".") not in searches:
        problems.append(f"searches lack {domain}")
    if problems:
        return check_result(check, FAILED, "; ".join(problems), details, DNS)
    return check_result(check, PASSED, f"nameservers {', '.join(nameservers)}, search {domain}", details)


def admission_checks(
    admitted: Mapping[str, Any],
    refused: Mapping[str, Any],
    credspec: str,
    service_account: str,
    other_service_account: str,
    not_verifiable_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Read two server-side dry-run pod creations (registered kubernetes.core.k8s results) as the webhook's two checks.

    ``admitted`` is the pod of ``service_account``, which may ``use`` the credspec: the webhook must admit it and
    inline the credspec's contents. ``refused`` is the pod of ``other_service_account``: the webhook must refuse it.
    With ``not_verifiable_reason``, nothing was asked: both checks are not verifiable here, for that reason.
    """
    check = f"webhook admits a pod of {service_account} using {credspec}"
    refusal = f"webhook refuses a pod of {other_service_account} using {credspec}"
    if not_verifiable_reason:
        return [not_verifiable(check, not_verifiable_reason), not_verifiable(refusal, not_verifiable_reason)]
    admitted = _required_mapping(admitted, "admission_checks", "_input")
    refused = _required_mapping(refused, "admission_checks", "refused")
    results = []
    if admitted.get("failed"):
        results.append(check_result(check, FAILED, f"refused: {admitted.get('msg') or admitted.get('error')}", {}, _ADMISSION))
    else:
        pod = admitted.get("result") or {}
        inlined = ((pod.get("spec") or {}).get("securityContext") or {}).get("windowsOptions", {}).get("gmsaCredentialSpec")
        if inlined:
            results.append(check_result(check, PASSED, "admitted, and the webhook inlined the credential spec", {"gmsaCredentialSpec": inlined}))
        else:
            results.append(check_result(check, FAILED, "admitted without the credential spec inlined: the webhook did not mutate the pod", {}, _ADMISSION))
    check = refusal
    message = str(refused.get("msg") or refused.get("error") or "")
    if not refused.get("failed"):
        results.append(check_result(check, FAILED, "admitted: the webhook does not enforce who may use the credspec", {}, _ADMISSION))
    elif "not authorized" in message:
        results.append(check_result(check, PASSED, "refused: the service account may not use the credspec", {}))
    else:
        results.append(check_result(check, FAILED, f"refused for another reason: {message}", {}, _ADMISSION))
    return results


def windows_nodes_check(pods: Sequence[Mapping[str, Any]], nodes: Sequence[Mapping[str, Any]], workload: str) -> dict[str, Any]:
    """Whether every pod of a workload is scheduled on a node labelled kubernetes.io/os=windows."""
    check = f"pods of {workload} run on Windows nodes"
    os_of = {node["metadata"]["name"]: (node["metadata"].get("labels") or {}).get("kubernetes.io/os") for node in nodes}
    placement = {pod["metadata"]["name"]: (pod.get("spec") or {}).get("nodeName") for pod in pods}
    details = {"pods": {pod: {"node": node, "os": os_of.get(node)} for pod, node in placement.items()}}
    if not placement:
        return check_result(check, FAILED, f"{workload} has no pods", details)
    elsewhere = sorted(pod for pod, node in placement.items() if os_of.get(node) != "windows")
    if elsewhere:
        return check_result(check, FAILED, f"not on a Windows node: {', '.join(elsewhere)}", details)
    return check_result(check, PASSED, ", ".join(f"{pod} on {node}" for pod, node in sorted(placement.items())), details)


def gmsa_verification_report(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summarise check results: ``result`` (passed, incomplete, failed), ``counts``, ``checks`` and printable ``lines``."""
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise AnsibleFilterError("gmsa_verification_report: _input must be a list of check results")
    try:
        return verification_report(results)
    except ValueError as error:
        raise AnsibleFilterError(f"gmsa_verification_report: {error}") from None


class FilterModule:
    """Filters of the verify role."""

    def filters(self):
        return {
            "in_pod_check": in_pod_check,
            "not_verifiable_check": not_verifiable_check,
            "retrieval_checks": retrieval_checks,
            "credspec_check": credspec_check,
            "workload_dns_check": workload_dns_check,
            "admission_checks": admission_checks,
            "windows_nodes_check": windows_nodes_check,
            "gmsa_verification_report": gmsa_verification_report,
        }
