"""The collection's job templates on a real AWX, set up the way AWX users do it, run against the lab.

AWX 24.6.1 runs natively (tests/awx/awxctl.py); its jobs go through receptor and podman with the execution
environment image built here. extensions/awx/configure.yml (awx.awx, built from AWX's source) creates the
credential types, credentials, execution environment, project, inventory and job templates; the site job template
and then the cleanup one are launched through AWX's REST API at verbosity 3, as a user would from the UI. What the
first site job changes is compared with what the same playbook changes from the command line (ansible-playbook
with the same inventory and names, run and cleaned up just before), task by task.

Lab-only settings, as in tests/integration/test_site_playbook.py: the project is a manual one (the checkout's
playbooks/ copied under AWX's projects directory, since no git server is reachable), the image is never pulled,
and the inventory carries the lab's webhook limits (examples/inventories/lab/group_vars/all/limits.yml).

Run from the repository root: ``python -m pytest tests/awx/test_awx_job_templates.py`` (make awx-test).
"""

import base64
import json
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from tests.awx import awxctl, build, ee
from tests.lab import COLLECTIONS_PATH, REPO_ROOT, kube

pytest_plugins = ("tests.lab.pytest_samba", "tests.lab.pytest_kube")

ACCOUNT = "ItestAwx01"
IDENTITY = "itest-awx-ccg"
NAMESPACE = "itest-awx"
# gmsa_identity_scope namespace (the default): one identity per workload namespace, named from IDENTITY.
NAMESPACE_IDENTITIES = IDENTITY + "-*"
JOB_SERVICE_ACCOUNT = ("kube-system", "itest-awx-controller")
PROJECT_DIR = "wincontainers-gmsa"
INVENTORY_VARS = {
    "gmsa_kds_root_key_lab_mode": True,
    "gmsa_domain_controllers": ["127.0.0.1"],
    "gmsa_accounts": [{"name": ACCOUNT, "service_accounts": [{"name": "itest-awx-app", "namespace": NAMESPACE}]}],
    "webhook_name": "itest-awx-webhook",
    "webhook_namespace": "itest-awx-webhook",
    # The real webhook, served by the lab kubelet, as in production: only the in-pod checks cannot run here.
    "webhook_replicas": 1,
    "verify_not_verifiable": {"in_pod": "no Windows container runs in the lab"},
    "workload_name": "itest-awx-sample",
}


class Secrets(tuple):
    """The values that must never show; their repr (in a failing test's report) does not show them either."""

    def __repr__(self):
        return "<%d secrets>" % len(self)


class Api:
    """AWX's REST API as the administrator, with basic authentication over the loopback."""

    def __init__(self, admin):
        self.url = admin["url"]
        token = base64.b64encode(("%s:%s" % (admin["username"], admin["password"])).encode()).decode()
        self.headers = {"Authorization": "Basic " + token, "Content-Type": "application/json"}

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=self.headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise AssertionError("%s %s: HTTP %d %s" % (method, path, error.code, error.read().decode()[:1000])) from None
        return json.loads(text) if text.strip().startswith(("{", "[")) else text

    def get(self, path):
        return self.request("GET", path)

    def all(self, path):
        results, page = [], path + ("&" if "?" in path else "?") + "page_size=200"
        while page:
            body = self.get(page)
            results.extend(body["results"])
            page = body["next"] and body["next"].replace(self.url, "")
        return results

    def job_template(self, name):
        (template,) = self.get("/api/v2/job_templates/?name=" + urllib.parse.quote(name))["results"]
        return template


# What configure.yml creates in the lab AWX (with the test's names), in an order AWX lets them be deleted.
CONFIGURED = (
    ("job_templates", "itest gMSA - "),
    ("inventories", "wincontainers.gmsa (itest)"),
    ("projects", "wincontainers.gmsa (itest)"),
    ("execution_environments", "wincontainers.gmsa (itest)"),
    ("credentials", "gMSA - "),
    ("credential_types", "(wincontainers.gmsa)"),
)


def remove_configuration(awx):
    """Delete what an earlier run of configure.yml created, so that this run starts from a fresh AWX's state."""
    for kind, name in CONFIGURED:
        for item in awx.all("/api/v2/%s/?name__contains=%s" % (kind, urllib.parse.quote(name))):
            awx.request("DELETE", "/api/v2/%s/%d/" % (kind, item["id"]))
    deadline = time.monotonic() + 120
    while any(awx.all("/api/v2/%s/?name__contains=%s" % (kind, urllib.parse.quote(name))) for kind, name in CONFIGURED):
        assert time.monotonic() < deadline, "AWX did not delete the previous run's objects"
        time.sleep(2)


def kubectl(lab, *args):
    return kube.kubectl(lab["state_dir"], lab["binaries"], *args)


def credspec_exists(lab, name):
    """Whether the GMSACredentialSpec exists; none exists while the CRD itself is absent."""
    if not kubectl(lab, "get", "crd", "gmsacredentialspecs.windows.k8s.io", "--ignore-not-found", "-o", "name").strip():
        return False
    return bool(kubectl(lab, "get", "gmsacredentialspecs", "--ignore-not-found", "-o", "name", name).strip())


def ad_account_exists(samba_dc, sam_account_name):
    """Whether an account of that sAMAccountName exists; the name may hold * (an LDAP filter's substring match)."""
    sam_ldb = os.path.join(os.path.dirname(os.path.dirname(samba_dc["smb_conf"])), "private", "sam.ldb")
    output = subprocess.run(
        ["ldbsearch", "-H", sam_ldb, "(sAMAccountName=%s)" % sam_account_name, "dn"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return "\ndn: " in "\n" + output


@pytest.fixture(name="awx", scope="module")
def fixture_awx():
    try:
        awxctl.up()
    except awxctl.AwxError as error:
        pytest.fail("the lab AWX did not start: %s" % error, pytrace=False)
    return Api(awxctl.admin_credentials())


@pytest.fixture(name="configured", scope="module")
def fixture_configured(awx, samba_dc, kube_lab, tmp_path_factory):
    """configure.yml run twice against the lab AWX; yields the two runs' recaps and the secrets given to AWX."""
    namespace, name = JOB_SERVICE_ACCOUNT
    kubectl(kube_lab, "create", "serviceaccount", "-n", namespace, name)
    kubectl(kube_lab, "create", "clusterrolebinding", name, "--clusterrole=cluster-admin", "--serviceaccount=%s:%s" % (namespace, name))
    token = kubectl(kube_lab, "create", "token", "-n", namespace, name, "--duration=2h").strip()
    identity_password = secrets.token_urlsafe(18) + "-Aa1"

    remove_configuration(awx)
    # A manual project laid out as a git project of this repository: playbooks/ and, beside it, roles/ (the
    # playbooks read the roles' argument specs from there, playbooks/validate.yml).
    project = os.path.join(awxctl.PROJECTS_ROOT, PROJECT_DIR)
    shutil.rmtree(project, ignore_errors=True)
    for directory in ("playbooks", "roles"):
        shutil.copytree(os.path.join(REPO_ROOT, directory), os.path.join(project, directory))

    settings = {
        "gmsa_awx_domain_connection": {
            "server": samba_dc["host"],
            "transport": "ldap",
            "username": "%s\\%s" % (samba_dc["netbios_name"], samba_dc["admin_user"]),
            "password": samba_dc["admin_password"],
            "auth": "ntlm",
            "tls": "none",
        },
        "gmsa_awx_identity": {"username": IDENTITY, "password": identity_password},
        "gmsa_awx_kubernetes": {
            "host": kube_lab["server"], "bearer_token": token, "verify_ssl": True, "ssl_ca_cert": pathlib.Path(kube_lab["ca_file"]).read_text(encoding="utf-8"),
        },
        "gmsa_awx_execution_environment": {"name": "wincontainers.gmsa (itest)", "image": ee.ensure_image(), "pull": "never"},
        "gmsa_awx_project": {"name": "wincontainers.gmsa (itest)", "scm_type": "manual", "local_path": PROJECT_DIR, "playbook_dir": "playbooks"},
        "gmsa_awx_inventory": {"name": "wincontainers.gmsa (itest)", "variables": INVENTORY_VARS},
        "gmsa_awx_job_template_prefix": "itest gMSA - ",
    }
    work = tmp_path_factory.mktemp("configure")
    settings_file = work / "settings.yml"
    settings_file.touch(mode=0o600)
    settings_file.write_text(yaml.safe_dump(settings))
    admin = awxctl.admin_credentials()
    env = dict(
        os.environ,
        CONTROLLER_HOST=admin["url"],
        CONTROLLER_USERNAME=admin["username"],
        CONTROLLER_PASSWORD=admin["password"],
        ANSIBLE_COLLECTIONS_PATH=os.pathsep.join((build.collections_dir(), COLLECTIONS_PATH)),
        NO_PROXY="127.0.0.1,localhost",
    )
    playbook = os.path.join(REPO_ROOT, "extensions", "awx", "configure.yml")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook, "-e", "@%s" % settings_file]
    runs = []
    for _attempt in range(2):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=900)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        runs.append(result.stdout)
    settings_file.unlink()
    yield {"runs": runs, "secrets": Secrets((samba_dc["admin_password"], identity_password, token))}
    kubectl(kube_lab, "delete", "clusterrolebinding", name, "--ignore-not-found")
    kubectl(kube_lab, "delete", "serviceaccount", "-n", namespace, name, "--ignore-not-found")


def run_on_command_line(playbook, inventory_file, settings_file, krb5_config, *extra):
    """ansible-playbook with the JSON callback; returns the names of the tasks that changed, in order, and the recap."""
    env = dict(
        os.environ,
        # The lab's domain has no DNS: the KDC is in the lab's krb5.conf (the AWX lab exposes it to the jobs).
        KRB5_CONFIG=krb5_config,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        NO_PROXY="127.0.0.1,localhost",
    )
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory_file), "-e", "@%s" % settings_file]
    command += list(extra) + [os.path.join(REPO_ROOT, "playbooks", playbook)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    # The JSON callback names a role's task "ROLE : NAME"; AWX's job events carry NAME (the role apart).
    changed = [
        task["task"]["name"].rpartition(" : ")[2] for play in report["plays"] for task in play["tasks"] if task["hosts"].get("localhost", {}).get("changed")
    ]
    return changed, report["stats"]["localhost"]["changed"]


@pytest.fixture(name="command_line", scope="module")
def fixture_command_line(configured, samba_dc, kube_lab, tmp_path_factory):
    """The site playbook from the command line, as a user without AWX runs it, with the same inventory and names, then
    the cleanup playbook: what changes on a first run there is what the AWX job must change."""
    # From the Secrets, whose repr hides them in a failing test's report.
    _admin_password, identity_password, token = configured["secrets"]
    work = tmp_path_factory.mktemp("command-line")
    inventory_file = work / "inventory.yml"
    inventory_file.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}, "vars": INVENTORY_VARS}}))
    ca_file = work / "kubernetes-ca.crt"
    ca_file.write_text(pathlib.Path(kube_lab["ca_file"]).read_text(encoding="utf-8"))
    settings_file = work / "settings.yml"
    settings_file.touch(mode=0o600)
    settings_file.write_text(yaml.safe_dump({
        "gmsa_domain_connection": {
            "domain_server": samba_dc["host"],
            "domain_transport": "ldap",
            "domain_username": "%s\\%s" % (samba_dc["netbios_name"], samba_dc["admin_user"]),
            "domain_password": samba_dc["admin_password"],
            "domain_auth": "ntlm",
            "domain_tls": "none",
        },
        "gmsa_identity_username": IDENTITY,
        "gmsa_identity_password": identity_password,
        "gmsa_kubernetes": {"host": kube_lab["server"], "api_key": token, "ca_cert": str(ca_file), "validate_certs": True},
    }))
    changed_tasks, changed = run_on_command_line("site.yml", inventory_file, settings_file, samba_dc["krb5_config"])
    run_on_command_line("cleanup.yml", inventory_file, settings_file, samba_dc["krb5_config"], "-e", "cleanup_domain=true")
    settings_file.unlink()
    return {"changed_tasks": changed_tasks, "changed": changed}


def recap_changed(stdout):
    (line,) = [line for line in stdout.splitlines() if line.startswith("localhost ") and "changed=" in line]
    return int(line.split("changed=")[1].split()[0])


def launch(awx, template_name, extra_vars=None, timeout=1800):
    """Launch a job template at verbosity 3, wait for the job to finish; return the finished job."""
    template = awx.job_template(template_name)
    body = {"verbosity": 3}
    if extra_vars:
        body["extra_vars"] = extra_vars
    job = awx.request("POST", "/api/v2/job_templates/%d/launch/" % template["id"], body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = awx.get("/api/v2/jobs/%d/" % job["id"])
        if job["finished"]:
            return job
        time.sleep(3)
    raise AssertionError("job %d of %s not finished after %d s (status %s)" % (job["id"], template_name, timeout, job["status"]))


def job_changed(awx, job):
    (summary,) = awx.get("/api/v2/jobs/%d/job_host_summaries/" % job["id"])["results"]
    return summary["changed"]


def job_changed_tasks(awx, job):
    events = awx.all("/api/v2/jobs/%d/job_events/?event=runner_on_ok&changed=true&order_by=counter" % job["id"])
    return [event["task"] for event in events]


def stdout_of(awx, job):
    return awx.get("/api/v2/jobs/%d/stdout/?format=txt_download" % job["id"])


def assert_no_secret(awx, job, secret_values):
    texts = [stdout_of(awx, job)] + [json.dumps(event) for event in awx.all("/api/v2/jobs/%d/job_events/" % job["id"])]
    for secret in secret_values:
        leaks = [text[:200] for text in texts if secret in text]
        assert not leaks, "a secret appears in %d event(s) or stdout of job %d" % (len(leaks), job["id"])


@pytest.fixture(name="site_jobs", scope="module")
def fixture_site_jobs(awx, configured, command_line, samba_dc, kube_lab):
    """The site job template launched twice, then the cleanup one with the AD objects: the three jobs.

    After the command line's run (command_line, which cleaned up after itself), so both start from the same state.
    """
    first = launch(awx, "itest gMSA - site")
    objects_after_site = {
        "gmsa": ad_account_exists(samba_dc, ACCOUNT + "$"),
        "identity": ad_account_exists(samba_dc, NAMESPACE_IDENTITIES),
        "credspec": credspec_exists(kube_lab, ACCOUNT.lower()),
        "namespace": bool(kubectl(kube_lab, "get", "namespace", "--ignore-not-found", "-o", "name", NAMESPACE).strip()),
    }
    rerun = launch(awx, "itest gMSA - site") if first["status"] == "successful" else None
    cleanup = launch(awx, "itest gMSA - cleanup", {"cleanup_domain": "true"})
    objects_after_cleanup = {
        "gmsa": ad_account_exists(samba_dc, ACCOUNT + "$"),
        "identity": ad_account_exists(samba_dc, NAMESPACE_IDENTITIES),
        "credspec": credspec_exists(kube_lab, ACCOUNT.lower()),
        "namespace": bool(kubectl(kube_lab, "get", "namespace", "--ignore-not-found", "-o", "name", NAMESPACE).strip()),
    }
    return {"first": first, "rerun": rerun, "cleanup": cleanup, "after_site": objects_after_site, "after_cleanup": objects_after_cleanup}


def test_configure_playbook_creates_everything_then_changes_nothing(configured, awx):
    first, second = configured["runs"]
    # Every task changes on a fresh AWX: credential types, credentials, EE, project, inventory, host, job templates.
    assert recap_changed(first) == 7, first[-3000:]
    assert recap_changed(second) == 0, second[-3000:]
    templates = {item["name"]: item for item in awx.all("/api/v2/job_templates/?name__startswith=" + urllib.parse.quote("itest gMSA - "))}
    stages = ("site", "domain", "cluster", "workload", "verify", "cleanup")
    assert sorted(templates) == sorted("itest gMSA - " + stage for stage in stages)
    for stage in stages:
        template = templates["itest gMSA - " + stage]
        assert (template["playbook"], template["survey_enabled"], template["ask_verbosity_on_launch"]) == ("playbooks/%s.yml" % stage, True, True)
    template = templates["itest gMSA - cleanup"]
    assert [question["variable"] for question in awx.get("/api/v2/job_templates/%d/survey_spec/" % template["id"])["spec"]] == [
        "cleanup_workload", "cleanup_credspecs", "cleanup_webhook", "cleanup_crd", "cleanup_domain",
    ]
    kinds = sorted(credential["summary_fields"]["credential_type"]["name"] for credential in awx.all("/api/v2/job_templates/%d/credentials/" % template["id"]))
    assert kinds == [
        "Active Directory connection (wincontainers.gmsa)", "OpenShift or Kubernetes API Bearer Token", "gMSA portable identity (wincontainers.gmsa)",
    ]


def test_site_job_runs_in_the_execution_environment_and_changes_as_on_the_command_line(site_jobs, command_line, awx):
    first = site_jobs["first"]
    assert first["status"] == "successful", stdout_of(awx, first)[-5000:]
    assert first["execution_environment"] == awx.job_template("itest gMSA - site")["execution_environment"]
    assert first["execution_node"] == awxctl.CLUSTER_HOST_ID
    # A first run changes something (the lab's forest has its KDS root key already, so not that).
    assert command_line["changed"] > 0
    assert (job_changed(awx, first), job_changed_tasks(awx, first)) == (command_line["changed"], command_line["changed_tasks"])
    assert site_jobs["after_site"] == {"gmsa": True, "identity": True, "credspec": True, "namespace": True}


def test_site_rerun_changes_nothing(site_jobs, awx):
    rerun = site_jobs["rerun"]
    assert rerun is not None and rerun["status"] == "successful", stdout_of(awx, rerun)[-5000:] if rerun else "the first run failed"
    assert job_changed(awx, rerun) == 0


def test_cleanup_job_removes_what_site_created(site_jobs, awx):
    cleanup = site_jobs["cleanup"]
    assert cleanup["status"] == "successful", stdout_of(awx, cleanup)[-5000:]
    assert site_jobs["after_cleanup"] == {"gmsa": False, "identity": False, "credspec": False, "namespace": False}


def test_no_secret_in_any_job_stdout_or_event(site_jobs, configured, awx):
    for job in (site_jobs["first"], site_jobs["rerun"], site_jobs["cleanup"]):
        assert job is not None
        assert job["verbosity"] == 3
        assert_no_secret(awx, job, configured["secrets"])
