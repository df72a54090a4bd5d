# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The in-pod check parsers on real outputs as published (fixtures/windows_checks/, each names its source)."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.wincontainers.gmsa.plugins.module_utils._windows_checks import (
    FAILED,
    INCOMPLETE,
    NOT_VERIFIABLE,
    PASSED,
    check_result,
    in_pod_checks,
    not_verifiable,
    parse_in_pod_check,
    parse_klist_get_krbtgt,
    parse_nltest_parentdomain,
    parse_nltest_sc_verify,
    verification_report,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "windows_checks"


def published(name: str) -> str:
    """The output in a fixture, without its provenance header (everything up to the ``---`` line)."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    header, separator, output = text.partition("\n---\n")
    assert separator and header.startswith("# command:") and "# source:" in header, f"{name} must say where it came from"
    return output


def test_every_fixture_is_used():
    used = {
        "nltest_sc_verify_success.txt",
        "nltest_sc_verify_no_logon_servers.txt",
        "nltest_sc_verify_no_trust_sam_account.txt",
        "nltest_sc_verify_rpc_server_unavailable.txt",
        "nltest_parentdomain_success.txt",
        "nltest_parentdomain_no_credspec.txt",
        "klist_get_krbtgt_success.txt",
        "klist_get_krbtgt_access_denied.txt",
        "klist_get_no_logon_servers.txt",
        "klist_get_target_unknown.txt",
    }
    assert {path.name for path in FIXTURES.glob("*.txt")} == used


# --- nltest /sc_verify -----------------------------------------------------------------------------------


def test_sc_verify_success():
    result = parse_nltest_sc_verify(published("nltest_sc_verify_success.txt"), "contoso.com")
    assert result == {
        "check": "nltest /sc_verify:contoso.com",
        "state": PASSED,
        "summary": "secure channel to dc01.contoso.com verified",
        "details": {
            "trusted_dc": "dc01.contoso.com",
            "connection_status": {"label": "Trusted DC Connection Status", "code": 0, "name": "NERR_Success"},
            "verification_status": {"label": "Trust Verification", "code": 0, "name": "NERR_Success"},
        },
        "cause": None,
        "hint": None,
    }


def test_sc_verify_success_with_windows_line_ends():
    output = published("nltest_sc_verify_success.txt").replace("\n", "\r\n")
    assert parse_nltest_sc_verify(output, "contoso.com")["state"] == PASSED


def test_sc_verify_no_logon_servers_fails_despite_command_completed_successfully():
    output = published("nltest_sc_verify_no_logon_servers.txt")
    assert "The command completed successfully" in output
    result = parse_nltest_sc_verify(output, "k8s.lab")
    assert result["state"] == FAILED
    assert result["summary"] == "Trusted DC Connection Status: ERROR_NO_LOGON_SERVERS (1311)"
    assert result["details"]["trusted_dc"] is None
    assert result["details"]["verification_status"]["code"] == 1311
    assert result["cause"] == "dns"
    assert "dnsConfig" in result["hint"]


def test_sc_verify_no_trust_sam_account_points_at_the_gmsa_and_the_credspec():
    result = parse_nltest_sc_verify(published("nltest_sc_verify_no_trust_sam_account.txt"), "contoso")
    assert (result["state"], result["cause"]) == (FAILED, "account")
    assert result["summary"] == "Trusted DC Connection Status: ERROR_NO_TRUST_SAM_ACCOUNT (1787)"
    assert "MachineAccountName" in result["hint"]


def test_sc_verify_netlogon_control_failure():
    result = parse_nltest_sc_verify(published("nltest_sc_verify_rpc_server_unavailable.txt"), "corp.example")
    assert (result["state"], result["cause"]) == (FAILED, "credspec")
    assert result["summary"] == "I_NetLogonControl failed: RPC_S_SERVER_UNAVAILABLE (1722)"
    assert result["details"]["connection_status"] is None


def test_sc_verify_unrecognised_output_fails_and_keeps_the_output():
    result = parse_nltest_sc_verify("The command completed successfully\r\n", "contoso.com")
    assert result["state"] == FAILED
    assert result["details"]["output"] == "The command completed successfully\r\n"
    assert result["cause"] is None


def test_sc_verify_success_statuses_without_a_trusted_dc_are_not_a_pass():
    output = published("nltest_sc_verify_success.txt").replace("Trusted DC Name \\\\dc01.contoso.com\n", "")
    assert "dc01" not in output
    assert parse_nltest_sc_verify(output, "contoso.com")["state"] == FAILED


# --- nltest /parentdomain --------------------------------------------------------------------------------


def test_parentdomain_success():
    result = parse_nltest_parentdomain(published("nltest_parentdomain_success.txt"), "APPMIG.local")
    assert (result["state"], result["details"]) == (PASSED, {"parent_domain": "appmig.local"})
    assert result["summary"] == "the container belongs to the domain appmig.local"


def test_parentdomain_without_an_expected_domain_reports_the_one_found():
    assert parse_nltest_parentdomain(published("nltest_parentdomain_success.txt"))["details"] == {"parent_domain": "appmig.local"}


def test_parentdomain_of_another_domain_fails():
    result = parse_nltest_parentdomain(published("nltest_parentdomain_success.txt"), "contoso.com")
    assert (result["state"], result["cause"]) == (FAILED, "credspec")
    assert result["summary"] == "parent domain appmig.local, expected contoso.com"


def test_parentdomain_without_credspec():
    result = parse_nltest_parentdomain(published("nltest_parentdomain_no_credspec.txt"), "contoso.com")
    assert result["state"] == FAILED
    assert result["summary"] == "Getting parent domain failed: RPC_S_SERVER_UNAVAILABLE (1722)"
    assert result["cause"] == "credspec"
    assert "gmsaCredentialSpecName" in result["hint"]


# --- klist get krbtgt ------------------------------------------------------------------------------------


def test_klist_success_reads_the_ticket():
    result = parse_klist_get_krbtgt(published("klist_get_krbtgt_success.txt"), "WebApp01")
    assert result["state"] == PASSED
    assert result["summary"] == "webapp01$ got a ticket-granting ticket (AES-256-CTS-HMAC-SHA1-96) from dc01.contoso.com"
    assert result["details"]["ticket"] == {
        "client": "webapp01$ @ CONTOSO.COM",
        "server": "krbtgt/webapp01 @ CONTOSO.COM",
        "encryption_type": "AES-256-CTS-HMAC-SHA1-96",
        "flags": ["forwardable", "renewable", "pre_authent", "name_canonicalize"],
        "start_time": "3/21/2019 4:17:53 (local)",
        "end_time": "3/21/2019 14:17:53 (local)",
        "renew_time": "3/28/2019 4:17:42 (local)",
        "session_key_type": "AES-256-CTS-HMAC-SHA1-96",
        "kdc_called": "dc01.contoso.com",
    }


def test_klist_success_without_an_expected_account():
    result = parse_klist_get_krbtgt(published("klist_get_krbtgt_success.txt").replace("\n", "\r\n"))
    assert (result["state"], result["summary"]) == (PASSED, "a ticket-granting ticket was retrieved")


def test_klist_ticket_of_another_account_fails():
    result = parse_klist_get_krbtgt(published("klist_get_krbtgt_success.txt"), "webapp02$")
    assert (result["state"], result["cause"]) == (FAILED, "credspec")
    assert result["summary"] == "the ticket is webapp01$'s, expected webapp02$'s"


def test_klist_retrieved_without_a_listed_ticket_cannot_prove_the_account():
    output = published("klist_get_krbtgt_success.txt")
    without_tickets = output[: output.index("Cached Tickets")]
    result = parse_klist_get_krbtgt(without_tickets, "webapp01")
    assert result["state"] == FAILED
    assert parse_klist_get_krbtgt(without_tickets)["state"] == PASSED


def test_klist_access_denied_points_at_the_identity():
    result = parse_klist_get_krbtgt(published("klist_get_krbtgt_access_denied.txt"), "webapp01")
    assert result["state"] == FAILED
    assert result["summary"] == "klist failed with 0xc0000022: {Access Denied}"
    assert result["details"] == {"status": "0xc0000022", "substatus": "0x5"}
    assert result["cause"] == "identity"
    assert "PrincipalsAllowedToRetrieveManagedPassword" in result["hint"]


def test_klist_no_logon_servers_points_at_dns():
    result = parse_klist_get_krbtgt(published("klist_get_no_logon_servers.txt"))
    assert result["summary"] == "klist failed with 0xc000005e"
    assert result["details"] == {"status": "0xc000005e", "substatus": "0x51f"}
    assert result["cause"] == "dns"


def test_klist_unknown_failure_keeps_the_message_and_gives_no_hint():
    result = parse_klist_get_krbtgt(published("klist_get_target_unknown.txt"))
    assert result["summary"] == "klist failed with 0x80090303: The specified target is unknown or unreachable"
    assert result["details"] == {"status": "0x80090303", "substatus": "0x35"}
    assert (result["state"], result["cause"], result["hint"]) == (FAILED, None, None)


# No published output of a clock-skew failure was found: these lines follow the format of the real failures
# above, with the codes Windows defines for it: STATUS_TIME_DIFFERENCE_AT_DC, SEC_E_TIME_SKEW, and the KDC's
# KRB_AP_ERR_SKEW (37) as substatus under a failure code that says nothing by itself (E_FAIL).
@pytest.mark.parametrize(
    "failure_lines",
    [
        "klist failed with 0xc0000133/-1073741517",
        "klist failed with 0x80090324/-2146893020",
        "Error calling API LsaCallAuthenticationPackage (GetTicket substatus): 0x25\nklist failed with 0x80004005/-2147467259",
    ],
)
def test_klist_clock_skew(failure_lines):
    assert parse_klist_get_krbtgt(f"\nCurrent LogonId is 0:0x2587c9\n{failure_lines}\n")["cause"] == "clock_skew"


def test_klist_unrecognised_output_fails():
    assert parse_klist_get_krbtgt("'klist' is not recognized as an internal or external command\r\n")["state"] == FAILED


# --- dispatch and report ---------------------------------------------------------------------------------


def test_in_pod_checks_dispatch_to_their_parsers():
    outputs = {
        "nltest /parentdomain": published("nltest_parentdomain_success.txt"),
        "nltest /sc_verify:appmig.local": published("nltest_sc_verify_success.txt"),
        "klist get krbtgt": published("klist_get_krbtgt_success.txt"),
    }
    assert list(outputs) == in_pod_checks("appmig.local")
    states = [parse_in_pod_check(check, output, "appmig.local", "webapp01")["state"] for check, output in outputs.items()]
    assert states == [PASSED, PASSED, PASSED]
    with pytest.raises(ValueError, match="nltest /query"):
        parse_in_pod_check("nltest /query", "", "appmig.local")


def test_check_result_refuses_an_unknown_state():
    with pytest.raises(ValueError, match="state: 'ok'"):
        check_result("x", "ok", "y")


def test_report_of_a_lab_run_is_incomplete_not_passed():
    results = [check_result("identity authenticates", PASSED, "svc-gmsa-reader authenticated")]
    results += [not_verifiable(check, "no Windows container runs in the lab") for check in in_pod_checks("lab.test")]
    report = verification_report(results)
    assert report["result"] == INCOMPLETE
    assert report["counts"] == {PASSED: 1, FAILED: 0, NOT_VERIFIABLE: 3}
    assert report["lines"] == [
        "passed               identity authenticates: svc-gmsa-reader authenticated",
        "not verifiable here  nltest /parentdomain: no Windows container runs in the lab",
        "not verifiable here  nltest /sc_verify:lab.test: no Windows container runs in the lab",
        "not verifiable here  klist get krbtgt: no Windows container runs in the lab",
    ]


def test_report_with_a_failure_fails_and_shows_the_hint():
    failure = parse_nltest_sc_verify(published("nltest_sc_verify_no_logon_servers.txt"), "k8s.lab")
    report = verification_report([not_verifiable("a", "b"), failure])
    assert report["result"] == FAILED
    assert report["lines"][1] == "FAILED               nltest /sc_verify:k8s.lab: Trusted DC Connection Status: ERROR_NO_LOGON_SERVERS (1311)"
    assert report["lines"][2].startswith("                     hint: The container finds no domain controller.")
    assert report["checks"][1] == failure


def test_report_of_all_passed_checks_passes():
    assert verification_report([check_result("a", PASSED, "fine")])["result"] == PASSED


def test_report_refuses_a_result_without_a_known_state():
    with pytest.raises(ValueError, match="check 'a': state 'ok'"):
        verification_report([{"check": "a", "state": "ok", "summary": ""}])
