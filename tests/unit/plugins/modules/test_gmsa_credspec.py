"""Unit tests for gmsa_credspec: validation before any cluster access, planning, RBAC shape."""

import base64
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_credspec
from tests.unit.plugins.stand_in_cluster import StandInCluster

DOMAIN = {
    "dns_name": "contoso.com",
    "netbios_name": "CONTOSO",
    "sid": "S-1-5-21-2126449477-2524075714-3094792973",
    "guid": "244818ae-87ca-4fcd-92ec-e79e5252348a",
}
IDENTITY = {"username": "gmsa-portable", "password": "Pa55-w0rd!"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"account_name": "WebApp01", "name": "Web_App"}, "credspecs[1].name: 'Web_App' is not a lowercase RFC 1123 subdomain"),
        ({"account_name": "ThisNameIsMuchTooLong"}, "credspecs[1].account_name: "),
        (
            {"account_name": "WebApp02", "host_account_config": {"plugin_guid": "CCC2A336-D7F3-4818-A213-272B7924213E", "plugin_input": "x"}},
            "credspecs[1].host_account_config.plugin_guid: 'CCC2A336-D7F3-4818-A213-272B7924213E' needs braces",
        ),
        (
            {"account_name": "WebApp02", "host_account_config": {"plugin_guid": "{not-a-guid}", "plugin_input": "x"}},
            "credspecs[1].host_account_config.plugin_guid: '{not-a-guid}' is not a GUID",
        ),
        (
            {"account_name": "WebApp02", "host_account_config": {"plugin": "azure_key_vault", "plugin_input": "${oops}"}},
            "credspecs[1].host_account_config.plugin_input: unknown placeholder ${oops}",
        ),
        ({"account_name": "WebApp02", "service_accounts": [{"name": "web", "namespace": "Web"}]}, "credspecs[1].service_accounts[0].namespace: "),
        ({"account_name": "WebApp02", "cluster_role_name": "Role!"}, "credspecs[1].cluster_role_name: "),
        ({"account_name": "webapp01"}, "credspecs: several entries give the GMSACredentialSpec name(s) webapp01; set name"),
        (
            {"account_name": "WebApp02", "cluster_role_name": "gmsa-use-webapp01"},
            "credspecs: several entries give the ClusterRole name(s) gmsa-use-webapp01; set cluster_role_name",
        ),
        ({"account_name": "WebApp02", "domain": dict(DOMAIN, sid=DOMAIN["sid"] + "-1104")}, "credspecs[1].domain.sid: "),
    ],
)
def test_invalid_entries_fail_naming_the_field_before_the_cluster_is_touched(entry, message, run_offline):
    result = run_offline(gmsa_credspec, {"domain": DOMAIN, "credspecs": [{"account_name": "WebApp01"}, entry]})
    assert result["failed"]
    assert message in result["msg"]


def test_one_identity_secret_cannot_hold_two_identities(run_offline):
    entries = [{"account_name": "WebApp01"}, {"account_name": "WebApp02", "identity": dict(IDENTITY, password="other")}]
    result = run_offline(gmsa_credspec, {"domain": DOMAIN, "identity": IDENTITY, "credspecs": entries})
    assert "identity Secret default/gmsa-identity is given different identities" in result["msg"]
    assert "other" not in json.dumps(result) and IDENTITY["password"] not in json.dumps(result)


def test_domain_is_required_for_present(run_offline):
    result = run_offline(gmsa_credspec, {"credspecs": [{"account_name": "WebApp01"}]})
    assert "credspecs[0].domain: is required" in result["msg"]


# A credspecs entry as the argument spec fills it in when only account_name is given.
ENTRY_DEFAULTS = {
    "name": None,
    "domain": None,
    "additional_accounts": [],
    "host_account_config": None,
    "service_accounts": [],
    "cluster_role_name": None,
    "identity": None,
    "identity_secret": {"name": "gmsa-identity", "namespaces": None},
    "json_path": None,
    "spec": None,
    "spec_file": None,
}


def _plan(with_identity=True, **entry):
    params = {"state": "present", "domain": DOMAIN, "identity": IDENTITY if with_identity else None, "group": None}
    return gmsa_credspec.plan_entry(dict(ENTRY_DEFAULTS, **entry), 0, params)


def test_plugin_input_template_gets_the_identity_secret():
    plan = _plan(
        account_name="WebApp01$",
        service_accounts=[{"name": "web", "namespace": "web"}],
        host_account_config={
            "plugin": None,
            "plugin_guid": "{6A4C4B4E-1D7F-4A4B-9C7E-3F1B2C3D4E5F}",
            "plugin_input": "ns=${secret_namespace};name=${secret_name}",
        },
    )
    assert plan["name"] == "webapp01"
    assert plan["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"]["PluginInput"] == "ns=web;name=gmsa-identity"
    assert plan["secrets"] == [("web", "gmsa-identity")]


def test_secret_namespace_placeholder_needs_exactly_one_namespace():
    with pytest.raises(gmsa_credspec.ValidationError, match=r"goes to 2 namespaces"):
        _plan(
            account_name="WebApp01",
            identity_secret={"name": "id", "namespaces": ["a", "b"]},
            host_account_config={"plugin": "aws_secrets_manager", "plugin_guid": None, "plugin_input": "${secret_namespace}"},
        )


def test_json_plugin_input_keeps_its_braces():
    arn = '{"credentialArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:gmsa"}'
    plan = _plan(account_name="WebApp01", host_account_config={"plugin": "aws_secrets_manager", "plugin_guid": None, "plugin_input": arn})
    config = plan["credspec"]["ActiveDirectoryConfig"]["HostAccountConfig"]
    assert config == {"PortableCcgVersion": "1", "PluginGUID": "{859E1386-BDB4-49E8-85C7-3070B13920E1}", "PluginInput": arn}


def test_manifests_allow_use_of_exactly_that_credspec_for_the_chosen_accounts():
    plan = _plan(
        account_name="WebApp01",
        service_accounts=[{"name": "web", "namespace": "web"}, {"name": "batch", "namespace": "web"}, {"name": "web", "namespace": "ops"}],
    )
    objects = {(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]): obj for obj in gmsa_credspec.manifests(plan)}
    assert set(objects) == {
        ("GMSACredentialSpec", None, "webapp01"),
        ("ClusterRole", None, "gmsa-use-webapp01"),
        ("RoleBinding", "ops", "gmsa-use-webapp01"),
        ("RoleBinding", "web", "gmsa-use-webapp01"),
        ("Secret", "ops", "gmsa-identity"),
        ("Secret", "web", "gmsa-identity"),
    }
    assert objects[("ClusterRole", None, "gmsa-use-webapp01")]["rules"] == [
        {"apiGroups": ["windows.k8s.io"], "resources": ["gmsacredentialspecs"], "verbs": ["use"], "resourceNames": ["webapp01"]}
    ]
    assert objects[("RoleBinding", "web", "gmsa-use-webapp01")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "batch", "namespace": "web"},
        {"kind": "ServiceAccount", "name": "web", "namespace": "web"},
    ]
    secret = objects[("Secret", "web", "gmsa-identity")]["data"]
    assert {key: base64.b64decode(value).decode() for key, value in secret.items()} == {
        "domain": "contoso.com",
        "username": "gmsa-portable",
        "password": "Pa55-w0rd!",
    }
    credspec = objects[("GMSACredentialSpec", None, "webapp01")]
    assert credspec["metadata"]["annotations"][gmsa_credspec.SECRETS_ANNOTATION] == "ops/gmsa-identity,web/gmsa-identity"


def test_no_identity_means_no_secret():
    plan = _plan(with_identity=False, account_name="WebApp01")
    assert [obj["kind"] for obj in gmsa_credspec.manifests(plan)] == ["GMSACredentialSpec", "ClusterRole"]


def test_conflicts_that_need_overwrite():
    desired = {"kind": "GMSACredentialSpec", "metadata": {"name": "a"}, "credspec": {"x": 1}}
    managed = {"labels": {"app.kubernetes.io/managed-by": "wincontainers.gmsa"}, "name": "a"}
    assert gmsa_credspec._conflict(None, desired) is None
    assert gmsa_credspec._conflict({"kind": "GMSACredentialSpec", "metadata": {"name": "a"}, "credspec": {"x": 1}}, desired) == (
        "exists and was not created by this collection"
    )
    assert gmsa_credspec._conflict({"kind": "GMSACredentialSpec", "metadata": managed, "credspec": {"x": 2}}, desired) == (
        "exists with a different credential spec"
    )
    assert gmsa_credspec._conflict({"kind": "GMSACredentialSpec", "metadata": managed, "credspec": {"x": 1}}, desired) is None


def _role(name, **labels):
    return {"kind": "ClusterRole", "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "wincontainers.gmsa", **labels}}}


def test_an_object_of_another_credspec_or_of_the_webhook_needs_overwrite():
    desired = next(obj for obj in gmsa_credspec.manifests(_plan(account_name="WebApp01")) if obj["kind"] == "ClusterRole")
    mine = _role("gmsa-use-webapp01", **{"app.kubernetes.io/name": "gmsa-credspec", "app.kubernetes.io/instance": "webapp01"})
    other = _role("gmsa-use-webapp01", **{"app.kubernetes.io/name": "gmsa-credspec", "app.kubernetes.io/instance": "billing"})
    webhook = _role("gmsa-use-webapp01", **{"app.kubernetes.io/name": "gmsa-webhook", "app.kubernetes.io/instance": "gmsa-webhook"})
    assert gmsa_credspec._conflict(mine, desired) is None
    assert gmsa_credspec._conflict(other, desired) == "belongs to gmsa-credspec 'billing'"
    assert gmsa_credspec._conflict(webhook, desired) == "belongs to gmsa-webhook 'gmsa-webhook'"


def test_the_api_servers_default_rbac_is_recognized():
    cluster_admin = {"kind": "ClusterRole", "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}}
    assert gmsa_credspec.is_rbac_default(cluster_admin)
    assert not gmsa_credspec.is_rbac_default(_role("gmsa-use-webapp01"))
    assert not gmsa_credspec.is_rbac_default(None)


class RecordingCluster(StandInCluster):
    """An API server in a dict that records each request; ``refuse`` names objects whose write is forbidden."""

    connection_pool_size = 10

    def __init__(self, refuse=()):
        self.objects = {("CustomResourceDefinition", None, "gmsacredentialspecs.windows.k8s.io"): {"kind": "CustomResourceDefinition"}}
        self.requests = []
        self.refuse = set(refuse)

    def get(self, kind, name, namespace=None):
        self.requests.append(("get", kind, name))
        return self.objects.get((kind, namespace, name))

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
        self.requests.append(("list", kind, namespace))
        return [obj for (k, ns, _n), obj in self.objects.items() if k == kind and namespace in (None, ns)]

    def apply(self, obj, dry_run=False):
        self.requests.append(("apply", obj["kind"], obj["metadata"]["name"]))
        if obj["metadata"]["name"] in self.refuse:
            raise gmsa_credspec.ApiError(f"applying {obj['kind']} {obj['metadata']['name']}: forbidden by RBAC: no", 403)
        self.objects[self._key(obj)] = obj
        return obj

    def delete(self, obj, dry_run=False):
        self.requests.append(("delete", obj["kind"], obj["metadata"]["name"]))
        return self.objects.pop(self._key(obj), None) is not None


def _run_against(monkeypatch, capsys, cluster, count, **args):
    monkeypatch.setattr(gmsa_credspec, "Cluster", lambda _module: cluster)
    credspecs = [
        {"account_name": f"App{index:03d}", "service_accounts": [{"name": "app", "namespace": f"ns{index % 3}"}], "identity_secret": {"name": f"id{index:03d}"}}
        for index in range(count)
    ]
    with patch_module_args(dict({"domain": DOMAIN, "identity": IDENTITY, "credspecs": credspecs}, **args)), pytest.raises(SystemExit):
        gmsa_credspec.main()
    return json.loads(capsys.readouterr().out)


def test_many_credspecs_are_read_with_a_few_lists_and_role_bindings_follow_their_roles(monkeypatch, capsys):
    cluster = RecordingCluster()
    result = _run_against(monkeypatch, capsys, cluster, 30)
    assert result["changed"] and len(result["objects"]) == 120
    reads = [request for request in cluster.requests if request[0] in ("get", "list")]
    # The CRD, three kinds, and the Secrets of three namespaces twice (ours, then names by namespace): no read per object.
    assert len(reads) == 1 + 3 + 3 * 2
    writes = [request[1] for request in cluster.requests if request[0] == "apply"]
    assert len(writes) == 120 and "RoleBinding" not in writes[:90] and set(writes[90:]) == {"RoleBinding"}

    cluster.requests.clear()
    rerun = _run_against(monkeypatch, capsys, cluster, 30)
    assert not rerun["changed"] and {request[0] for request in cluster.requests} == {"get", "list"} and len(cluster.requests) == 1 + 3 + 3


def test_a_failed_write_names_every_object_handled_and_not_handled(monkeypatch, capsys):
    cluster = RecordingCluster(refuse={"gmsa-use-app004"})
    result = _run_against(monkeypatch, capsys, cluster, 30)
    assert result["failed"] and "applying ClusterRole gmsa-use-app004: forbidden by RBAC" in result["msg"]
    actions = {entry["object"]: entry["action"] for entry in result["objects"]}
    assert len(actions) == 120 and actions["ClusterRole gmsa-use-app004"] == "failed"
    assert {actions[f"RoleBinding ns{index % 3}/gmsa-use-app{index:03d}"] for index in range(30)} == {"not attempted"}
    assert "more objects were not attempted" in result["msg"]


def test_without_the_crd_the_credspecs_deleted_with_it_are_named_from_their_remaining_roles(monkeypatch, capsys):
    cluster = RecordingCluster()
    assert _run_against(monkeypatch, capsys, cluster, 2)["changed"]
    # kubectl delete crd: the API server deletes every GMSACredentialSpec with it; the ClusterRoles stay.
    cluster.objects = {key: obj for key, obj in cluster.objects.items() if key[0] not in ("CustomResourceDefinition", "GMSACredentialSpec")}
    result = _run_against(monkeypatch, capsys, cluster, 2)
    assert result["failed"] and not result["changed"]
    assert result["msg"] == (
        "the GMSACredentialSpec CRD (gmsacredentialspecs.windows.k8s.io) is not installed; install it with wincontainers.gmsa.gmsa_webhook; "
        "credspecs app000, app001 were deleted with it (their ClusterRoles remain): run this task again once the CRD is back to recreate them"
    )


def test_removal_after_the_credspecs_are_gone_still_removes_their_identity_secrets(monkeypatch, capsys):
    cluster = RecordingCluster()
    assert _run_against(monkeypatch, capsys, cluster, 2)["changed"]
    # The CRD was deleted (and reinstalled empty): the credspecs, which recorded their Secrets, are gone.
    cluster.objects = {key: obj for key, obj in cluster.objects.items() if key[0] != "GMSACredentialSpec"}
    result = _run_against(monkeypatch, capsys, cluster, 2, state="absent", identity=None)
    assert result["changed"]
    assert {"object": "Secret ns0/id000", "action": "deleted"} in result["objects"] and {"object": "Secret ns1/id001", "action": "deleted"} in result["objects"]
    assert cluster.objects == {("CustomResourceDefinition", None, "gmsacredentialspecs.windows.k8s.io"): {"kind": "CustomResourceDefinition"}}


def _run_credspecs(monkeypatch, capsys, cluster, names, **args):
    """gmsa_credspec on ``cluster`` for credspecs ``names`` whose identity Secret is one and the same."""
    monkeypatch.setattr(gmsa_credspec, "Cluster", lambda _module: cluster)
    credspecs = [{"account_name": name, "service_accounts": [{"name": "app", "namespace": "web"}], "identity_secret": {"name": "shared"}} for name in names]
    with patch_module_args(dict({"domain": DOMAIN, "identity": IDENTITY, "credspecs": credspecs}, **args)), pytest.raises(SystemExit):
        gmsa_credspec.main()
    return json.loads(capsys.readouterr().out)


class RemovedMeanwhile(RecordingCluster):
    """Another run removes the credspec ``other`` while this one deletes its first object."""

    def __init__(self, other):
        super().__init__()
        self.other = other

    def delete(self, obj, dry_run=False):
        self.objects.pop(("GMSACredentialSpec", None, self.other), None)
        return super().delete(obj, dry_run)


def test_two_removals_at_once_of_the_credspecs_of_one_identity_secret_remove_it(monkeypatch, capsys):
    cluster = RemovedMeanwhile(other="app002")
    assert _run_credspecs(monkeypatch, capsys, cluster, ["App001", "App002"])["changed"]
    # This run removes App001 and sees App002, which still uses the Secret; the other run removes App002 meanwhile and
    # saw App001. Judged by the first reading alone, each would keep the Secret and it would stay behind.
    result = _run_credspecs(monkeypatch, capsys, cluster, ["App001"], state="absent", identity=None)
    assert {"object": "Secret web/shared", "action": "deleted"} in result["objects"], result["objects"]
    assert ("Secret", "web", "shared") not in cluster.objects
