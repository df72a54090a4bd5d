# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests for the verify role's filters: observations in, check results and the report out."""

from __future__ import annotations

import pathlib

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.wincontainers.gmsa.plugins.filter.verification import (
    FilterModule,
    admission_checks,
    credspec_check,
    gmsa_verification_report,
    in_pod_check,
    not_verifiable_check,
    retrieval_checks,
    windows_nodes_check,
    workload_dns_check,
)
from ansible_collections.wincontainers.gmsa.plugins.module_utils._credspec import build_credspec

FIXTURES = pathlib.Path(__file__).parents[1] / "module_utils" / "fixtures" / "windows_checks"
DOMAIN = {
    "dns_name": "contoso.com",
    "dns_tree_name": "contoso.com",
    "netbios_name": "CONTOSO",
    "sid": "S-1-5-21-2126449477-2524075714-3094792973",
    "guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
}


def published(name):
    return (FIXTURES / name).read_text(encoding="utf-8").partition("\n---\n")[2]


def states(results):
    return [result["state"] for result in results]


def test_in_pod_check_reads_published_nltest_output():
    result = in_pod_check(published("nltest_sc_verify_success.txt").replace("\n", "\r\n"), "nltest /sc_verify:contoso.com", "contoso.com")
    assert result["state"] == "passed"
    assert result["details"]["trusted_dc"] == "dc01.contoso.com"


def test_in_pod_check_names_the_cause_of_a_failure():
    result = in_pod_check(published("nltest_sc_verify_no_logon_servers.txt"), "nltest /sc_verify:contoso.com", "contoso.com")
    assert (result["state"], result["cause"]) == ("failed", "dns")


def test_in_pod_check_takes_a_k8s_exec_result():
    exec_result = {"changed": False, "rc": 0, "stdout": published("nltest_parentdomain_success.txt"), "stderr": ""}
    assert in_pod_check(exec_result, "nltest /parentdomain", "appmig.local")["state"] == "passed"
    failed = in_pod_check({"failed": True, "msg": "container not found (\"app\")"}, "klist get krbtgt", "contoso.com")
    assert (failed["state"], failed["summary"]) == ("failed", 'could not run in the pod: container not found ("app")')
    assert in_pod_check({"changed": False}, "klist get krbtgt", "contoso.com")["summary"] == "could not run in the pod: the exec returned no output"


def test_in_pod_check_rejects_unknown_checks_and_non_text():
    with pytest.raises(AnsibleFilterError, match="in_pod_check: check: 'whoami'"):
        in_pod_check("", "whoami", "contoso.com")
    with pytest.raises(AnsibleFilterError, match="must be the command's output"):
        in_pod_check(None, "klist get krbtgt", "contoso.com")


def test_not_verifiable_check_says_why_and_needs_a_reason():
    result = not_verifiable_check("klist get krbtgt", "no Windows container runs in the lab")
    assert result["state"] == "not_verifiable"
    assert result["summary"] == "no Windows container runs in the lab"
    with pytest.raises(AnsibleFilterError, match="reason is required"):
        not_verifiable_check("klist get krbtgt", "")


def test_retrieval_checks_one_logon_then_password_and_ticket_per_gmsa():
    retrieval = [
        {"account": "WebApp01", "identity_authenticated": True, "password_readable": True, "kerberos_ticket": "ok", "ok": True, "detail": "proven"},
        {"account": "Billing", "identity_authenticated": True, "password_readable": False, "kerberos_ticket": "failed", "ok": False,
         "detail": "gmsa-ccg may not read the password of Billing"},
    ]
    results = retrieval_checks(retrieval, "gmsa-ccg")
    assert [result["check"] for result in results] == [
        "gmsa-ccg authenticates",
        "gmsa-ccg may read the password of WebApp01",
        "WebApp01 gets a Kerberos ticket",
        "gmsa-ccg may read the password of Billing",
        "Billing gets a Kerberos ticket",
    ]
    assert states(results) == ["passed", "passed", "passed", "failed", "failed"]
    assert results[3]["cause"] == "identity"


def test_retrieval_checks_refused_logon_and_skipped_ticket():
    retrieval = [{"account": "WebApp01", "identity_authenticated": False, "password_readable": False, "kerberos_ticket": "skipped",
                  "ok": False, "detail": "the domain refused gmsa-ccg's password"}]
    results = retrieval_checks(retrieval, "gmsa-ccg")
    assert states(results) == ["failed", "failed", "not_verifiable"]
    assert results[0]["summary"] == "the domain refused gmsa-ccg's password"
    with pytest.raises(AnsibleFilterError, match="is empty"):
        retrieval_checks([], "gmsa-ccg")


def test_credspec_check_passes_on_a_match_whatever_the_case():
    expected = build_credspec(DOMAIN, "WebApp01")
    live = {"metadata": {"name": "webapp01"}, "credspec": build_credspec(dict(DOMAIN, netbios_name="contoso"), "webapp01")}
    result = credspec_check(live, expected, "webapp01")
    assert result["state"] == "passed"
    assert result["summary"] == "names WebApp01 in contoso.com with the domain's SID and GUID"


def test_credspec_check_lists_each_difference():
    expected = build_credspec(DOMAIN, "WebApp01")
    stale = build_credspec(dict(DOMAIN, sid="S-1-5-21-1-2-3"), "WebApp01")
    result = credspec_check({"credspec": stale}, expected, "webapp01")
    assert (result["state"], result["cause"]) == ("failed", "credspec")
    assert result["summary"] == "differs in DomainJoinConfig.Sid"
    assert credspec_check(None, expected, "webapp01")["summary"] == "GMSACredentialSpec webapp01 does not exist in the cluster"


def test_workload_dns_check():
    spec = {"dnsConfig": {"nameservers": ["10.0.0.10", "10.0.0.11"], "searches": ["Contoso.com"]}}
    assert workload_dns_check(spec, ["10.0.0.10"], "contoso.com", "web")["state"] == "passed"
    missing = workload_dns_check({"dnsConfig": {"nameservers": ["10.96.0.10"]}}, ["10.0.0.10"], "contoso.com", "web")
    assert (missing["state"], missing["cause"]) == ("failed", "dns")
    assert missing["summary"] == "nameservers lack the domain controllers 10.0.0.10; searches lack contoso.com"
    assert workload_dns_check(spec, [], "contoso.com", "web")["state"] == "failed"
    assert workload_dns_check(None, ["10.0.0.10"], "contoso.com", "web")["summary"] == "web was not found in the cluster"


def test_admission_checks_pass_when_the_webhook_inlines_and_refuses():
    admitted = {"changed": True, "result": {"spec": {"securityContext": {"windowsOptions": {
        "gmsaCredentialSpecName": "webapp01", "gmsaCredentialSpec": '{"CmsPlugins":["ActiveDirectory"]}'}}}}}
    refused = {"failed": True, "msg": 'admission webhook "admission.gmsa.windows.k8s.io" denied the request: service account '
                                      '"default" is not authorized to `use` GMSA cred spec "webapp01"'}
    assert states(admission_checks(admitted, refused, "webapp01", "webapp01", "default")) == ["passed", "passed"]


def test_admission_checks_fail_without_a_working_webhook():
    unmutated = {"changed": True, "result": {"spec": {"securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "webapp01"}}}}}
    results = admission_checks(unmutated, {"changed": True}, "webapp01", "webapp01", "default")
    assert states(results) == ["failed", "failed"]
    assert results[1]["summary"] == "admitted: the webhook does not enforce who may use the credspec"
    other = admission_checks({"failed": True, "msg": "no endpoints"}, {"failed": True, "msg": "no endpoints"}, "webapp01", "webapp01", "default")
    assert [result["summary"] for result in other] == ["refused: no endpoints", "refused for another reason: no endpoints"]


def test_admission_checks_that_cannot_run_here_keep_their_names():
    results = admission_checks({}, {}, "webapp01", "webapp01", "default", not_verifiable_reason="webhook binary unavailable")
    assert [(result["check"], result["state"], result["summary"]) for result in results] == [
        ("webhook admits a pod of webapp01 using webapp01", "not_verifiable", "webhook binary unavailable"),
        ("webhook refuses a pod of default using webapp01", "not_verifiable", "webhook binary unavailable"),
    ]


def test_windows_nodes_check():
    nodes = [{"metadata": {"name": "win-0", "labels": {"kubernetes.io/os": "windows"}}}]
    pods = [{"metadata": {"name": "web-1"}, "spec": {"nodeName": "win-0"}}]
    assert windows_nodes_check(pods, nodes, "web")["summary"] == "web-1 on win-0"
    pending = pods + [{"metadata": {"name": "web-2"}, "spec": {}}]
    assert windows_nodes_check(pending, nodes, "web")["summary"] == "not on a Windows node: web-2"
    assert windows_nodes_check([], nodes, "web")["state"] == "failed"


def test_report_is_incomplete_when_some_checks_cannot_run_here():
    results = [not_verifiable_check("klist get krbtgt", "no Windows container"), workload_dns_check(
        {"dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["contoso.com"]}}, ["10.0.0.10"], "contoso.com", "web")]
    report = gmsa_verification_report(results)
    assert report["result"] == "incomplete"
    assert report["counts"] == {"passed": 1, "failed": 0, "not_verifiable": 1}
    assert report["lines"][0].startswith("not verifiable here  klist get krbtgt")


def test_report_rejects_what_is_not_a_check_result():
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        gmsa_verification_report("passed")
    with pytest.raises(AnsibleFilterError, match="state 'ok'"):
        gmsa_verification_report([{"check": "x", "state": "ok", "summary": ""}])


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "in_pod_check", "not_verifiable_check", "retrieval_checks", "credspec_check", "workload_dns_check",
        "admission_checks", "windows_nodes_check", "gmsa_verification_report",
    }
