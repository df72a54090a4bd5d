# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Read the checks run inside a Windows pod, and turn check results into the verification report.

The verify role runs three commands in a running Windows container (kubernetes.core.k8s_exec):

- ``nltest /parentdomain``: the container has a domain identity at all, that is, it got its credential spec;
- ``nltest /sc_verify:<domain>``: Netlogon, acting as the gMSA, holds a verified secure channel to a DC;
- ``klist get krbtgt``: the gMSA gets a Kerberos ticket-granting ticket.

Their exit codes prove nothing (nltest prints "The command completed successfully" under a failed status), so
the parsers read the text. Each returns a *check result*, the dict every check of the verify role produces:

``check``
    what was checked; for in-pod checks the command itself, e.g. ``nltest /sc_verify:contoso.com``.
``state``
    ``passed``, ``failed`` or ``not_verifiable`` (nothing could run the check here, e.g. no Windows container
    in the lab: never reported as passed).
``summary``
    one line for people.
``details``
    the parsed fields (trusted DC, status codes, ticket client, server, encryption type, times).
``cause`` and ``hint``
    on failure, the likely cause among the known ones and what to look at; ``None`` when none applies.

Windows prints these outputs in the node's display language; the parsers key on the status codes and on the
English labels, and report output they cannot read as a failure that shows the output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PASSED = "passed"
FAILED = "failed"
NOT_VERIFIABLE = "not_verifiable"
STATE_LABELS = {PASSED: "passed", FAILED: "FAILED", NOT_VERIFIABLE: "not verifiable here"}

# Overall result of a report where nothing failed but some checks could not run here.
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Cause:
    """A known cause of a failed check, and what to look at."""

    name: str
    hint: str


DNS = Cause(
    "dns",
    "The container finds no domain controller. Check the pod's dnsConfig (nameservers: the domain controllers; "
    "searches: the domain), that the domain name resolves inside the pod, and that the pod network reaches the "
    "domain controllers on DNS 53, Kerberos 88, NetLogon 139 and LDAP 389.",
)
IDENTITY = Cause(
    "identity",
    "The container could not act as the gMSA. The portable identity in the Secret must authenticate (domain, "
    "username, password) and be allowed to retrieve the gMSA password (PrincipalsAllowedToRetrieveManagedPassword, "
    "directly or through its group); the node's CCG plugin must be able to read that Secret.",
)
CLOCK_SKEW = Cause(
    "clock_skew",
    "Kerberos refused the request because the clocks differ: the Windows node and the domain controller must agree "
    "within 5 minutes. Sync the node (and its Hyper-V host) with the domain's time source.",
)
ACCOUNT = Cause(
    "account",
    "The domain has no usable account for the name the container uses. Check that the gMSA exists, is enabled "
    "(userAccountControl 4096, WORKSTATION_TRUST_ACCOUNT), and is the account the credential spec names "
    "(MachineAccountName and GroupManagedServiceAccounts, without the $).",
)
CREDSPEC = Cause(
    "credspec",
    "The container runs without a domain identity: its credential spec did not take effect. Check that the pod "
    "names a GMSACredentialSpec (gmsaCredentialSpecName) that the webhook expanded into windowsOptions."
    "gmsaCredentialSpec, and the node's Microsoft-Windows-Containers-CCG/Admin event log for plugin errors.",
)

# Win32 error codes, as nltest prints them ("Status = 1311 0x51f ERROR_NO_LOGON_SERVERS") and as klist prints
# the substatus of a failed ticket request.
_WIN32_CAUSES = {
    5: IDENTITY,  # ERROR_ACCESS_DENIED
    1311: DNS,  # ERROR_NO_LOGON_SERVERS
    1398: CLOCK_SKEW,  # ERROR_TIME_SKEW
    1722: CREDSPEC,  # RPC_S_SERVER_UNAVAILABLE: Netlogon has no domain identity to bind with
    1787: ACCOUNT,  # ERROR_NO_TRUST_SAM_ACCOUNT
}
# klist's substatus carries the KDC's error when the KDC answered one; 0x25 is no Win32 code in use.
_KLIST_SUBSTATUS_CAUSES = {**_WIN32_CAUSES, 0x25: CLOCK_SKEW}  # KRB_AP_ERR_SKEW (RFC 4120 7.5.9)
# NTSTATUS or SSPI codes, as in "klist failed with 0xc0000022/-1073741790".
_KLIST_FAILURE_CAUSES = {
    0xC0000022: IDENTITY,  # STATUS_ACCESS_DENIED
    0xC000005E: DNS,  # STATUS_NO_LOGON_SERVERS
    0xC0000133: CLOCK_SKEW,  # STATUS_TIME_DIFFERENCE_AT_DC
    0x80090324: CLOCK_SKEW,  # SEC_E_TIME_SKEW
}

# "Trusted DC Connection Status Status = 1311 0x51f ERROR_NO_LOGON_SERVERS", "I_NetLogonControl failed: Status = ..."
_NLTEST_STATUS_RE = re.compile(r"^(?P<label>.*?)\s*Status = (?P<code>\d+) 0x[0-9a-f]+ (?P<name>\S+)$", re.IGNORECASE)
_TRUSTED_DC_RE = re.compile(r"^Trusted DC Name(?:\s+\\\\(?P<dc>\S+))?$")
# "appmig.local. (1)": the DNS name of the domain, dot-terminated
_PARENT_DOMAIN_RE = re.compile(r"^(?P<domain>[^\s()]+?)\.? \(\d+\)$")

_KLIST_RETRIEVED_RE = re.compile(r"^A ticket to (?P<target>\S+) has been retrieved successfully\.?$")
_KLIST_SUBSTATUS_RE = re.compile(r"\(GetTicket substatus\): 0x(?P<code>[0-9a-f]+)$", re.IGNORECASE)
_KLIST_FAILED_RE = re.compile(r"^klist failed with 0x(?P<code>[0-9a-f]+)/-?\d+(?::\s*(?P<message>.*))?$", re.IGNORECASE)
_TICKET_START_RE = re.compile(r"^#(?P<index>\d+)>\s+Client: (?P<client>.+)$")
_TICKET_FLAGS_RE = re.compile(r"^Ticket Flags (?P<value>0x[0-9a-f]+)(?: -> (?P<names>.*))?$", re.IGNORECASE)
_TICKET_FIELD_RE = re.compile(r"^(?P<key>[A-Za-z ]+?):\s*(?P<value>.*)$")
_TICKET_FIELDS = {
    "Server": "server",
    "KerbTicket Encryption Type": "encryption_type",
    # Times stay as printed: their format follows the node's locale and they are in its local time zone.
    "Start Time": "start_time",
    "End Time": "end_time",
    "Renew Time": "renew_time",
    "Session Key Type": "session_key_type",
    "Kdc Called": "kdc_called",
}


def check_result(
    check: str,
    state: str,
    summary: str,
    details: Mapping[str, Any] | None = None,
    cause: Cause | None = None,
) -> dict[str, Any]:
    """Build one check result (the shape is described in the module docstring)."""
    if state not in STATE_LABELS:
        raise ValueError(f"state: {state!r} is not one of {', '.join(STATE_LABELS)}")
    return {
        "check": check,
        "state": state,
        "summary": summary,
        "details": dict(details or {}),
        "cause": cause.name if cause else None,
        "hint": cause.hint if cause else None,
    }


def not_verifiable(check: str, reason: str) -> dict[str, Any]:
    """A check nothing could run here, e.g. an in-pod check where no Windows container runs."""
    return check_result(check, NOT_VERIFIABLE, reason)


def in_pod_checks(domain: str) -> list[str]:
    """The in-pod checks for ``domain``, in the order they isolate a fault: identity, secure channel, Kerberos."""
    return ["nltest /parentdomain", f"nltest /sc_verify:{domain}", "klist get krbtgt"]


def parse_in_pod_check(check: str, output: str, domain: str, account: str | None = None) -> dict[str, Any]:
    """Read the output of one of :func:`in_pod_checks`; ``account`` is the gMSA the pod should run as."""
    if check == "nltest /parentdomain":
        return parse_nltest_parentdomain(output, domain)
    if check == f"nltest /sc_verify:{domain}":
        return parse_nltest_sc_verify(output, domain)
    if check == "klist get krbtgt":
        return parse_klist_get_krbtgt(output, account)
    raise ValueError(f"check: {check!r} is not one of {', '.join(in_pod_checks(domain))}")


def _lines(output: str) -> list[str]:
    # kubectl exec hands Windows output over with CRLF line ends.
    return [line.strip() for line in output.splitlines() if line.strip()]


def _unreadable(check: str, output: str) -> dict[str, Any]:
    return check_result(check, FAILED, "output not recognised; see details.output", {"output": output})


def _nltest_statuses(lines: list[str]) -> list[dict[str, Any]]:
    statuses = []
    for line in lines:
        match = _NLTEST_STATUS_RE.match(line)
        if match:
            statuses.append({"label": match["label"], "code": int(match["code"]), "name": match["name"]})
    return statuses


def _nltest_failure(check: str, failed: dict[str, Any], details: Mapping[str, Any]) -> dict[str, Any]:
    label = failed["label"].rstrip(":")
    summary = f"{label}: {failed['name']} ({failed['code']})"
    return check_result(check, FAILED, summary, details, _WIN32_CAUSES.get(failed["code"]))


def parse_nltest_parentdomain(output: str, domain: str | None = None) -> dict[str, Any]:
    """Read ``nltest /parentdomain``; with ``domain``, the container must belong to that domain."""
    check = "nltest /parentdomain"
    lines = _lines(output)
    statuses = _nltest_statuses(lines)
    if statuses:
        return _nltest_failure(check, statuses[0], {"status": statuses[0]})
    parent = next((match["domain"] for match in map(_PARENT_DOMAIN_RE.match, lines) if match), None)
    if parent is None:
        return _unreadable(check, output)
    details = {"parent_domain": parent}
    if domain is not None and parent.casefold() != domain.rstrip(".").casefold():
        mismatch = Cause(CREDSPEC.name, f"The container belongs to {parent}, not {domain}: its credential spec names another domain.")
        return check_result(check, FAILED, f"parent domain {parent}, expected {domain}", details, mismatch)
    return check_result(check, PASSED, f"the container belongs to the domain {parent}", details)


def parse_nltest_sc_verify(output: str, domain: str) -> dict[str, Any]:
    """Read ``nltest /sc_verify:<domain>``: both the connection and the trust verification must succeed."""
    check = f"nltest /sc_verify:{domain}"
    lines = _lines(output)
    statuses = _nltest_statuses(lines)
    by_label = {status["label"]: status for status in statuses}
    trusted_dc = next((match["dc"] for match in map(_TRUSTED_DC_RE.match, lines) if match), None)
    details = {
        "trusted_dc": trusted_dc,
        "connection_status": by_label.get("Trusted DC Connection Status"),
        "verification_status": by_label.get("Trust Verification"),
    }
    failed = next((status for status in statuses if status["code"] != 0), None)
    if failed:
        return _nltest_failure(check, failed, details)
    if trusted_dc is None or details["connection_status"] is None or details["verification_status"] is None:
        return _unreadable(check, output)
    return check_result(check, PASSED, f"secure channel to {trusted_dc} verified", details)


def _klist_tickets(lines: list[str]) -> list[dict[str, Any]]:
    tickets: list[dict[str, Any]] = []
    for line in lines:
        start = _TICKET_START_RE.match(line)
        if start:
            tickets.append({"client": start["client"]})
            continue
        if not tickets:
            continue
        flags = _TICKET_FLAGS_RE.match(line)
        field = _TICKET_FIELD_RE.match(line)
        if flags:
            tickets[-1]["flags"] = (flags["names"] or "").split()
        elif field and field["key"] in _TICKET_FIELDS:
            tickets[-1][_TICKET_FIELDS[field["key"]]] = field["value"]
    return tickets


def _principal(client: str) -> str:
    """``webapp01$`` from ``webapp01$ @ CONTOSO.COM``."""
    return client.partition(" @ ")[0]


def parse_klist_get_krbtgt(output: str, account: str | None = None) -> dict[str, Any]:
    """Read ``klist get krbtgt``; with ``account`` (the gMSA, ``$`` optional) the ticket must be the gMSA's."""
    check = "klist get krbtgt"
    lines = _lines(output)
    substatus = next((int(match["code"], 16) for match in map(_KLIST_SUBSTATUS_RE.search, lines) if match), None)
    failure = next((match for match in map(_KLIST_FAILED_RE.match, lines) if match), None)
    if failure:
        status = int(failure["code"], 16)
        details = {"status": f"0x{status:08x}", "substatus": None if substatus is None else f"0x{substatus:x}"}
        cause = _KLIST_FAILURE_CAUSES.get(status) or _KLIST_SUBSTATUS_CAUSES.get(substatus)
        message = f": {failure['message']}" if failure["message"] else ""
        return check_result(check, FAILED, f"klist failed with 0x{status:08x}{message}", details, cause)
    if not any(map(_KLIST_RETRIEVED_RE.match, lines)):
        return _unreadable(check, output)
    tgt = next((ticket for ticket in _klist_tickets(lines) if ticket.get("server", "").startswith("krbtgt/")), None)
    details = {"ticket": tgt}
    if account is None:
        return check_result(check, PASSED, "a ticket-granting ticket was retrieved", details)
    expected = account.rstrip("$") + "$"
    if tgt is None:
        return check_result(check, FAILED, f"a ticket was retrieved but none is listed to show it is {expected}'s", details)
    client = _principal(tgt["client"])
    if client.casefold() != expected.casefold():
        wrong_identity = Cause(CREDSPEC.name, f"The container authenticates as {client}, not as the gMSA {expected}: check its credential spec.")
        return check_result(check, FAILED, f"the ticket is {client}'s, expected {expected}'s", details, wrong_identity)
    return check_result(check, PASSED, f"{client} got a ticket-granting ticket ({tgt.get('encryption_type')}) from {tgt.get('kdc_called')}", details)


def verification_report(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summarise check results into the report the verify role prints.

    ``result`` is ``failed`` when any check failed, ``incomplete`` when none failed but some were not verifiable
    here, ``passed`` otherwise; ``counts`` counts each state; ``lines`` is the printable report, one line per
    check and a hint line under each failure that has one.
    """
    checks = [dict(result) for result in results]
    counts = dict.fromkeys(STATE_LABELS, 0)
    lines = []
    width = max(map(len, STATE_LABELS.values()))
    for check in checks:
        if check.get("state") not in STATE_LABELS:
            raise ValueError(f"check {check.get('check')!r}: state {check.get('state')!r} is not one of {', '.join(STATE_LABELS)}")
        counts[check["state"]] += 1
        lines.append(f"{STATE_LABELS[check['state']]:<{width}}  {check['check']}: {check['summary']}")
        if check["state"] == FAILED and check.get("hint"):
            lines.append(f"{'':<{width}}  hint: {check['hint']}")
    if counts[FAILED]:
        result = FAILED
    elif counts[NOT_VERIFIABLE]:
        result = INCOMPLETE
    else:
        result = PASSED
    return {"result": result, "counts": counts, "checks": checks, "lines": lines}
