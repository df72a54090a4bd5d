# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Ownership per credspec and no stale grants, on the lab's real API server.

gmsa_credspec runs in this process against the lab (nothing mocked); the API server's own authorizer answers
whether a service account may ``use`` a credspec (``kubectl auth can-i``). Every name starts with ``lp-`` so the
suites sharing the lab are not disturbed.

    python -m pytest tests/integration/test_least_privilege.py -v
"""

import base64
import contextlib
import io
import json
import subprocess
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _webhook_manifests
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_admission_policy, gmsa_credspec
from tests.lab import kube

pytest_plugins = ("tests.lab.pytest_kube",)

NS_A, NS_B = "lp-apps-a", "lp-apps-b"
DOMAIN = {
    "dns_name": "lp.example",
    "netbios_name": "LP",
    "sid": "S-1-5-21-1004336348-1177238915-682003331",
    "guid": "6a9b4c9a-4fbe-4b2c-8b0b-0f2c2c2b2d4f",
}
IDENTITY = {"username": "lp-portable", "password": "Lp-Portable-Pa55w0rd!"}
APP_A = {"account_name": "LpAppA", "name": "lp-app-a", "service_accounts": [{"name": "web", "namespace": NS_A}]}
APP_B = {"account_name": "LpAppB", "name": "lp-app-b", "service_accounts": [{"name": "billing", "namespace": NS_A}]}
WEBHOOK = _webhook_manifests.WebhookSettings(name="lp-gmsa-webhook", namespace="lp-gmsa-system")
INSTANCE = "app.kubernetes.io/instance"


@pytest.fixture(name="lab", scope="module")
def fixture_lab(kube_lab):
    crd_was_there = _get(kube_lab, "crd", _webhook_manifests.CRD_NAME) is not None
    if not crd_was_there:
        _kubectl(kube_lab, "apply", "--server-side", "--field-manager=wincontainers.gmsa", "-f", "-", stdin=json.dumps(_webhook_manifests.crd()))
        _kubectl(kube_lab, "wait", "--for=condition=Established", f"crd/{_webhook_manifests.CRD_NAME}", "--timeout=60s")
    for namespace in (NS_A, NS_B):
        _kubectl(kube_lab, "create", "namespace", namespace)
    yield kube_lab
    everything = [APP_A, APP_B, dict(APP_A, name="lp-app-renamed")]
    _run(kube_lab, gmsa_credspec, {"state": "absent", "credspecs": everything})
    _kubectl(kube_lab, "delete", "clusterrole", WEBHOOK.name, "lp-foreign", "--ignore-not-found")
    _kubectl(kube_lab, "delete", "namespace", NS_A, NS_B, "--ignore-not-found", "--wait=false")
    if not crd_was_there and not json.loads(_kubectl(kube_lab, "get", "gmsacredentialspecs", "-o", "json"))["items"]:
        _kubectl(kube_lab, "delete", "crd", _webhook_manifests.CRD_NAME, "--ignore-not-found")


@pytest.fixture(autouse=True)
def _clean_credspecs(lab):
    yield
    _run(lab, gmsa_credspec, {"state": "absent", "credspecs": [APP_A, APP_B, dict(APP_A, name="lp-app-renamed")]})


def _kubectl(lab, *args, stdin=None):
    return kube.kubectl(lab["state_dir"], lab["binaries"], *args, stdin=stdin)


def _get(lab, kind, name, namespace=None):
    command = [lab["binaries"]["kubectl"], "--kubeconfig", lab["kubeconfig"], "get", kind, name, "-o", "json", *(["-n", namespace] if namespace else [])]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    return json.loads(process.stdout) if process.returncode == 0 else None


def _run(lab, module, args):
    """Run a cluster module in this process against the lab; return its JSON result."""
    output = io.StringIO()
    with patch_module_args(dict(args, kubeconfig=lab["kubeconfig"])), contextlib.redirect_stdout(output):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(output.getvalue())


def _may_use(lab, namespace, account, credspec):
    command = [
        lab["binaries"]["kubectl"], "--kubeconfig", lab["kubeconfig"], "auth", "can-i", "use", f"gmsacredentialspecs.windows.k8s.io/{credspec}",
        "-n", namespace, "--as", f"system:serviceaccount:{namespace}:{account}", "--quiet",
    ]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _apply(lab, *credspecs, **options):
    return _run(lab, gmsa_credspec, dict({"domain": DOMAIN, "identity": IDENTITY, "credspecs": list(credspecs)}, **options))


# --- ownership -------------------------------------------------------------------------------------------------


def test_every_object_names_the_credspec_that_owns_it(lab):
    result = _apply(lab, APP_A)
    assert not result.get("failed"), result
    owned = (("gmsacredentialspec", "lp-app-a", None), ("clusterrole", "gmsa-use-lp-app-a", None), ("rolebinding", "gmsa-use-lp-app-a", NS_A))
    for kind, name, namespace in owned:
        labels = _get(lab, kind, name, namespace)["metadata"]["labels"]
        assert labels[INSTANCE] == "lp-app-a" and labels["app.kubernetes.io/name"] == "gmsa-credspec", (kind, labels)
    secret = _get(lab, "secret", "gmsa-identity", NS_A)
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wincontainers.gmsa"
    credspec = _get(lab, "gmsacredentialspec", "lp-app-a")
    assert credspec["metadata"]["annotations"][gmsa_credspec.SECRETS_ANNOTATION] == f"{NS_A}/gmsa-identity"


def test_a_credspec_cannot_take_over_another_credspecs_cluster_role_and_role_binding(lab):
    assert not _apply(lab, APP_A).get("failed")
    role_before = _get(lab, "clusterrole", "gmsa-use-lp-app-a")
    result = _apply(lab, dict(APP_B, cluster_role_name="gmsa-use-lp-app-a"))
    assert result["failed"] and not result["changed"]
    assert "ClusterRole gmsa-use-lp-app-a belongs to gmsa-credspec 'lp-app-a'" in result["msg"]
    assert f"RoleBinding {NS_A}/gmsa-use-lp-app-a belongs to gmsa-credspec 'lp-app-a'" in result["msg"]
    assert _get(lab, "clusterrole", "gmsa-use-lp-app-a")["metadata"]["resourceVersion"] == role_before["metadata"]["resourceVersion"]
    assert _get(lab, "gmsacredentialspec", "lp-app-b") is None
    assert _may_use(lab, NS_A, "web", "lp-app-a") and not _may_use(lab, NS_A, "billing", "lp-app-a")


def test_overwrite_takes_over_another_credspecs_role_which_then_names_its_new_owner(lab):
    assert not _apply(lab, APP_A).get("failed")
    result = _apply(lab, dict(APP_B, cluster_role_name="gmsa-use-lp-app-a"), overwrite=True)
    assert not result.get("failed"), result
    assert _get(lab, "clusterrole", "gmsa-use-lp-app-a")["metadata"]["labels"][INSTANCE] == "lp-app-b"
    assert _may_use(lab, NS_A, "billing", "lp-app-b")


def test_a_credspec_cannot_take_over_the_webhooks_cluster_role(lab):
    # The ClusterRole exactly as gmsa_webhook builds it for an install named lp-gmsa-webhook.
    _kubectl(lab, "apply", "--server-side", "--field-manager=wincontainers.gmsa", "-f", "-", stdin=json.dumps(_webhook_manifests.cluster_role(WEBHOOK)))
    before = _get(lab, "clusterrole", WEBHOOK.name)
    result = _apply(lab, dict(APP_A, cluster_role_name=WEBHOOK.name))
    assert result["failed"] and not result["changed"]
    assert f"ClusterRole {WEBHOOK.name} belongs to gmsa-webhook '{WEBHOOK.name}'" in result["msg"]
    after = _get(lab, "clusterrole", WEBHOOK.name)
    assert (after["rules"], after["metadata"]["resourceVersion"]) == (before["rules"], before["metadata"]["resourceVersion"])


def test_the_api_servers_default_rbac_is_never_taken_over_even_with_overwrite(lab):
    before = _get(lab, "clusterrole", "cluster-admin")
    result = _apply(lab, dict(APP_A, cluster_role_name="cluster-admin"), overwrite=True)
    assert result["failed"] and not result["changed"]
    assert "refusing to replace ClusterRole cluster-admin" in result["msg"] and "default RBAC" in result["msg"]
    assert _get(lab, "clusterrole", "cluster-admin")["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_role_of_the_same_name_that_the_collection_did_not_create_is_kept(lab):
    _kubectl(lab, "create", "clusterrole", "lp-foreign", "--verb=get", "--resource=pods")
    result = _apply(lab, dict(APP_A, cluster_role_name="lp-foreign"))
    assert result["failed"] and "ClusterRole lp-foreign exists and was not created by this collection" in result["msg"]
    removal = _run(lab, gmsa_credspec, {"state": "absent", "credspecs": [dict(APP_A, cluster_role_name="lp-foreign")]})
    assert not removal.get("failed"), removal
    assert _get(lab, "clusterrole", "lp-foreign") is not None


def test_removing_one_credspec_never_deletes_anothers_objects_nor_the_identity_secret_it_still_uses(lab):
    assert not _apply(lab, APP_A, APP_B).get("failed")
    # Removing A, even named with B's role name, touches nothing of B's.
    result = _run(lab, gmsa_credspec, {"state": "absent", "credspecs": [dict(APP_A, cluster_role_name="gmsa-use-lp-app-b")]})
    assert not result.get("failed"), result
    assert _get(lab, "gmsacredentialspec", "lp-app-a") is None and _get(lab, "clusterrole", "gmsa-use-lp-app-a") is None
    assert _get(lab, "rolebinding", "gmsa-use-lp-app-a", NS_A) is None
    kept = (("gmsacredentialspec", "lp-app-b", None), ("clusterrole", "gmsa-use-lp-app-b", None), ("rolebinding", "gmsa-use-lp-app-b", NS_A))
    for kind, name, namespace in kept:
        assert _get(lab, kind, name, namespace) is not None, (kind, name)
    assert _get(lab, "secret", "gmsa-identity", NS_A) is not None, "B still uses the shared identity Secret"
    assert _may_use(lab, NS_A, "billing", "lp-app-b") and not _may_use(lab, NS_A, "web", "lp-app-a")
    # Once B goes too, nothing uses the Secret any more.
    assert not _run(lab, gmsa_credspec, {"state": "absent", "credspecs": [APP_B]}).get("failed")
    assert _get(lab, "secret", "gmsa-identity", NS_A) is None


# --- hostile input, cluster side (the domain side is test_hostile_input.py) ----------------------------------------


def _ours(lab):
    """Every object of the kinds gmsa_credspec writes whose name or namespace starts with lp-."""
    items = json.loads(_kubectl(lab, "get", "gmsacredentialspecs,clusterroles,rolebindings,secrets", "--all-namespaces", "-o", "json"))["items"]
    return sorted(
        (item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"], item["metadata"]["resourceVersion"])
        for item in items
        if item["metadata"]["name"].startswith(("lp-", "gmsa-use-lp-")) or (item["metadata"].get("namespace") or "").startswith("lp-")
    )


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "Web'App"}, "credspecs[0].name"),
        ({"account_name": "a;b", "name": None}, "credspecs[0].account_name"),
        ({"service_accounts": [{"name": "web", "namespace": "kube-system;id"}]}, "credspecs[0].service_accounts[0].namespace"),
        ({"cluster_role_name": "system:masters"}, "credspecs[0].cluster_role_name"),
        ({"identity_secret": {"name": "../etc"}}, "credspecs[0].identity_secret.name"),
        ({"host_account_config": {"plugin_guid": "{$(whoami)}", "plugin_input": "x"}}, "credspecs[0].host_account_config.plugin_guid"),
        ({"host_account_config": {"plugin": "azure_key_vault", "plugin_input": "${env:PATH}"}}, "credspecs[0].host_account_config.plugin_input"),
        ({"identity": {"username": "a;b", "password": "x"}}, "credspecs[0].identity.username"),
        ({"json_path": "/nonexistent-lp/x.json"}, "credspecs[0].json_path"),
    ],
)
def test_hostile_values_are_refused_naming_the_field_before_the_cluster_changes(lab, entry, field):
    before = _ours(lab)
    result = _apply(lab, {key: value for key, value in dict(APP_A, **entry).items() if value is not None})
    assert result["failed"] and result["msg"].startswith(field + ":"), result["msg"]
    assert _ours(lab) == before


def test_shell_syntax_in_valid_values_is_stored_as_data(lab, tmp_path):
    canary = tmp_path / "pwned"
    plugin_input = f"x=$(touch {canary});y=`touch {canary}`;z=' \"; ${{secret_name}}"
    json_path = tmp_path / f"$(touch {canary.name}).json"
    password = f"P'a\"ss$(touch {canary})`id`;é€"
    plugin = {"plugin_guid": "{6A4C4B4E-1D7F-4A4B-9C7E-3F1B2C3D4E5F}", "plugin_input": plugin_input}
    entry = dict(APP_A, json_path=str(json_path), host_account_config=plugin)
    result = _run(lab, gmsa_credspec, {"domain": DOMAIN, "identity": dict(IDENTITY, password=password), "credspecs": [entry]})
    assert not result.get("failed"), result
    stored = _get(lab, "gmsacredentialspec", "lp-app-a")["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"]
    assert stored == plugin_input.replace("${secret_name}", "gmsa-identity")
    assert json.loads(json_path.read_text())["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"] == stored
    secret = _get(lab, "secret", "gmsa-identity", NS_A)
    assert base64.b64decode(secret["data"]["password"]).decode() == password
    assert password not in json.dumps(result)
    assert not canary.exists(), "a value was executed as a command"

# --- no stale grants ---------------------------------------------------------------------------------------------


TWO_NAMESPACES = dict(APP_A, service_accounts=[{"name": "web", "namespace": NS_A}, {"name": "web", "namespace": NS_B}])


def test_renaming_the_cluster_role_removes_the_old_role_and_its_bindings_in_every_namespace(lab):
    assert not _apply(lab, dict(TWO_NAMESPACES, cluster_role_name="lp-use-old")).get("failed")
    assert _may_use(lab, NS_B, "web", "lp-app-a")
    result = _apply(lab, dict(TWO_NAMESPACES, cluster_role_name="lp-use-new"))
    assert not result.get("failed"), result
    assert _get(lab, "clusterrole", "lp-use-old") is None
    assert _get(lab, "rolebinding", "lp-use-old", NS_A) is None and _get(lab, "rolebinding", "lp-use-old", NS_B) is None
    assert _get(lab, "rolebinding", "lp-use-new", NS_A) is not None and _get(lab, "rolebinding", "lp-use-new", NS_B) is not None
    assert _may_use(lab, NS_A, "web", "lp-app-a") and _may_use(lab, NS_B, "web", "lp-app-a")
    assert {"object": "ClusterRole lp-use-old", "action": "deleted"} in result["objects"]


def test_removing_a_service_account_removes_its_grant(lab):
    accounts = [{"name": "web", "namespace": NS_A}, {"name": "batch", "namespace": NS_A}, {"name": "web", "namespace": NS_B}]
    assert not _apply(lab, dict(APP_A, service_accounts=accounts)).get("failed")
    assert _may_use(lab, NS_A, "batch", "lp-app-a") and _may_use(lab, NS_B, "web", "lp-app-a")
    result = _apply(lab, dict(APP_A, service_accounts=accounts[:1]))
    assert not result.get("failed"), result
    assert _may_use(lab, NS_A, "web", "lp-app-a")
    assert not _may_use(lab, NS_A, "batch", "lp-app-a"), "the account removed from the list keeps its grant"
    assert not _may_use(lab, NS_B, "web", "lp-app-a")
    assert _get(lab, "rolebinding", "gmsa-use-lp-app-a", NS_B) is None


def test_renaming_a_credspec_with_prune_removes_the_old_credspec_and_its_grants(lab):
    assert not _apply(lab, TWO_NAMESPACES, APP_B, group="lp-group", prune=True).get("failed")
    # Another task's credspec (another group) that prune must not reach.
    assert not _apply(lab, dict(APP_A, account_name="LpOther", name="lp-app-other"), group="lp-elsewhere").get("failed")
    try:
        result = _apply(lab, dict(TWO_NAMESPACES, name="lp-app-renamed"), group="lp-group", prune=True)
        assert not result.get("failed"), result
        for kind, name, namespace in (
            ("gmsacredentialspec", "lp-app-a", None), ("clusterrole", "gmsa-use-lp-app-a", None),
            ("rolebinding", "gmsa-use-lp-app-a", NS_A), ("rolebinding", "gmsa-use-lp-app-a", NS_B),
            ("gmsacredentialspec", "lp-app-b", None), ("clusterrole", "gmsa-use-lp-app-b", None),
        ):
            assert _get(lab, kind, name, namespace) is None, (kind, name, namespace)
        assert _may_use(lab, NS_A, "web", "lp-app-renamed") and _may_use(lab, NS_B, "web", "lp-app-renamed")
        assert not _may_use(lab, NS_A, "web", "lp-app-a") and not _may_use(lab, NS_A, "billing", "lp-app-b")
        assert _get(lab, "secret", "gmsa-identity", NS_A) is not None, "the renamed credspec still uses the identity Secret"
        assert _get(lab, "gmsacredentialspec", "lp-app-other") is not None, "prune reached another group's credspec"
    finally:
        _run(lab, gmsa_credspec, {"state": "absent", "credspecs": [{"account_name": "LpOther", "name": "lp-app-other"}]})


# --- the opt-out label is a privilege ---------------------------------------------------------------------------

OPT_OUT_ADMINS = "lp-opt-out-admins"
POLICY = {"name": "lp-opt-out-label", "allowed_groups": ["system:masters", OPT_OUT_ADMINS]}


@pytest.fixture(name="opt_out_policy")
def fixture_opt_out_policy(lab):
    """The policy, and a user who may label namespaces (RBAC) as a member of lp-devs or of the allowed group."""
    _kubectl(lab, "create", "clusterrole", "lp-namespace-labeler", "--verb=get,patch,update", "--resource=namespaces")
    _kubectl(
        lab, "create", "clusterrolebinding", "lp-namespace-labeler", "--clusterrole=lp-namespace-labeler",
        "--group=lp-devs", f"--group={OPT_OUT_ADMINS}", "--group=lp-rbac-opt-out",
    )
    # The other way in: RBAC's verb opt-out on GMSACredentialSpecs, to a group the policy does not name.
    _kubectl(lab, "create", "clusterrole", "lp-opt-out", "--verb=opt-out", "--resource=gmsacredentialspecs.windows.k8s.io")
    _kubectl(lab, "create", "clusterrolebinding", "lp-opt-out", "--clusterrole=lp-opt-out", "--group=lp-rbac-opt-out")
    try:
        yield _run(lab, gmsa_admission_policy, POLICY)
    finally:
        _run(lab, gmsa_admission_policy, dict(POLICY, state="absent"))
        _kubectl(lab, "delete", "clusterrolebinding,clusterrole", "lp-namespace-labeler", "lp-opt-out", "--ignore-not-found")


def _label(lab, group, *labels):
    """Label NS_B as user lp-user in ``group``: (accepted, what the API server said)."""
    command = [
        lab["binaries"]["kubectl"], "--kubeconfig", lab["kubeconfig"], "--as", "lp-user", "--as-group", group,
        "label", "namespace", NS_B, "--overwrite", *labels,
    ]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    return process.returncode == 0, process.stdout + process.stderr


def test_only_the_named_groups_may_set_or_remove_the_opt_out_labels(lab, opt_out_policy):
    assert not opt_out_policy.get("failed"), opt_out_policy
    assert opt_out_policy["supported"] is True and opt_out_policy["changed"] is True
    # The API server enforces a new policy once its informer has it: wait for the first refusal.
    deadline = time.monotonic() + 30
    while (attempt := _label(lab, "lp-devs", "windows.k8s.io/disabled=true"))[0] and time.monotonic() < deadline:
        _label(lab, OPT_OUT_ADMINS, "windows.k8s.io/disabled-")
        time.sleep(1)
    accepted, said = attempt
    assert not accepted, said
    assert "only members of system:masters, lp-opt-out-admins (or whom RBAC allows opt-out on gmsacredentialspecs.windows.k8s.io)" in said
    assert "may set, change or remove the namespace label windows.k8s.io/disabled" in said
    assert not _label(lab, "lp-devs", "gmsa-webhook=disabled")[0], "upstream's older opt-out label is guarded too"
    assert _label(lab, "lp-devs", "team=web")[0], "other labels stay free"
    assert _label(lab, OPT_OUT_ADMINS, "windows.k8s.io/disabled=true")[0], "a member may opt the namespace out"
    assert not _label(lab, "lp-devs", "windows.k8s.io/disabled=false")[0], "nor may a non-member change the value"
    assert not _label(lab, "lp-devs", "windows.k8s.io/disabled-")[0], "nor remove it"
    assert _get(lab, "namespace", NS_B)["metadata"]["labels"]["windows.k8s.io/disabled"] == "true"
    assert _label(lab, OPT_OUT_ADMINS, "windows.k8s.io/disabled-")[0], "a member may opt it back in"
    assert _label(lab, "lp-rbac-opt-out", "gmsa-webhook=disabled")[0], "RBAC's opt-out verb is the other way in"
    assert _label(lab, "lp-rbac-opt-out", "gmsa-webhook-")[0]
    again = _run(lab, gmsa_admission_policy, POLICY)
    assert again["changed"] is False and again["supported"] is True
