# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_service_accounts against an in-memory API server: what it creates, what it never touches, when a namespace
may go. The lab runs it for real in the site and cleanup playbooks (tests/integration/test_user_path.py)."""

import copy
import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError, Kind
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_service_accounts
from tests.unit.plugins.stand_in_cluster import StandInCluster

MANAGED = {"app.kubernetes.io/managed-by": "wincontainers.gmsa"}
TOKEN = "kubernetes.io/service-account-token"
KINDS = [Kind("v1", "ServiceAccount", "serviceaccounts", True), Kind("v1", "ConfigMap", "configmaps", True), Kind("v1", "Secret", "secrets", True),
         Kind("v1", "Event", "events", True), Kind("apps/v1", "Deployment", "deployments", True)]


def _object(kind, name, namespace=None, labels=None, **metadata):
    metadata = dict(metadata, name=name, labels=dict(labels or {}), **({"namespace": namespace} if namespace else {}))
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata}


class FakeApiServer(StandInCluster):
    """Objects in a dict, writes recorded; ``created_meanwhile`` appear just before the module's create reaches them."""

    def __init__(self, *objects, created_meanwhile=(), unlistable=(), undiscovered=()):
        self.objects = {self._key(obj): copy.deepcopy(obj) for obj in objects}
        self.created_meanwhile = {self._key(obj): obj for obj in created_meanwhile}
        self.unlistable, self.undiscovered = set(unlistable), list(undiscovered)
        self.writes, self.lists = [], []

    def get(self, kind, name, namespace=None):
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
        name = kind.kind if isinstance(kind, Kind) else kind
        self.lists.append((name, namespace, field_selector))
        if name in self.unlistable:
            raise ApiError(f"listing {name}: forbidden by RBAC", 403)
        items = [obj for key, obj in self.objects.items() if key[0] == name and namespace in (None, key[1])]
        if field_selector:
            negate, wanted = "!=" in field_selector, field_selector.split("=")[-1]
            items = [obj for obj in items if (obj.get("type") == wanted) != negate]
        return [copy.deepcopy({"kind": obj["kind"], "metadata": obj["metadata"]} if metadata_only else obj) for obj in items]

    def namespaced_kinds(self):
        return KINDS, self.undiscovered

    def create(self, obj, dry_run=False):
        key = self._key(obj)
        if key in self.created_meanwhile:
            self.objects[key] = self.created_meanwhile.pop(key)
        if key in self.objects:
            raise ApiError(f"creating {key}: already exists", 409)
        if obj["kind"] != "Namespace" and ("Namespace", None, key[1]) not in self.objects:
            raise ApiError(f"creating {key}: namespaces {key[1]} not found", 404)
        self.writes.append(("create", key, dry_run))
        if not dry_run:
            self.objects[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def delete(self, obj, dry_run=False):
        key = self._key(obj)
        self.writes.append(("delete", key, dry_run))
        if not dry_run:
            del self.objects[key]
        return True


def _run(monkeypatch, capsys, server, args, check_mode=False):
    warned = []
    monkeypatch.setattr(gmsa_service_accounts, "Cluster", server)
    monkeypatch.setattr(AnsibleModule, "warn", lambda _module, message: warned.append(message))
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)), pytest.raises(SystemExit):
        gmsa_service_accounts.main()
    return dict(json.loads(capsys.readouterr().out), warned=warned)


ACCOUNTS = {"service_accounts": [{"namespace": "web", "name": "app"}, {"namespace": "web", "name": "worker"}, {"namespace": "ops", "name": "app"}]}


def test_missing_namespaces_and_accounts_are_created_labelled_and_existing_ones_are_left_as_they_are(monkeypatch, capsys):
    theirs = _object("Namespace", "ops", labels={"team": "ops"})
    server = FakeApiServer(theirs, _object("ServiceAccount", "app", "ops"))
    result = _run(monkeypatch, capsys, server, ACCOUNTS)
    assert result["changed"] is True
    assert [(write[0], write[1]) for write in server.writes] == [
        ("create", ("Namespace", None, "web")), ("create", ("ServiceAccount", "web", "app")), ("create", ("ServiceAccount", "web", "worker")),
    ]
    assert server.objects[("Namespace", None, "web")]["metadata"]["labels"] == MANAGED
    assert server.objects[("Namespace", None, "ops")] == theirs
    assert {entry["object"]: entry["action"] for entry in result["objects"]}["ServiceAccount ops/app"] == "unchanged"
    # One list of namespaces, one of the service accounts of each namespace that existed: no read per object.
    assert server.lists == [("Namespace", None, None), ("ServiceAccount", "ops", None)]

    again = _run(monkeypatch, capsys, server, ACCOUNTS)
    assert again["changed"] is False and len(server.writes) == 3


def test_an_object_someone_creates_between_the_read_and_the_write_stays_theirs(monkeypatch, capsys):
    theirs = _object("Namespace", "web", labels={"team": "web"})
    server = FakeApiServer(created_meanwhile=[theirs])
    result = _run(monkeypatch, capsys, server, {"service_accounts": [{"namespace": "web", "name": "app"}]})
    assert server.objects[("Namespace", None, "web")] == theirs
    assert {entry["object"]: entry["action"] for entry in result["objects"]} == {"Namespace web": "unchanged", "ServiceAccount web/app": "created"}


def test_check_mode_predicts_the_accounts_of_a_namespace_it_would_create_and_says_so(monkeypatch, capsys):
    server = FakeApiServer()
    result = _run(monkeypatch, capsys, server, {"service_accounts": [{"namespace": "web", "name": "app"}]}, check_mode=True)
    assert result["changed"] is True and server.objects == {}
    assert {entry["object"]: entry["action"] for entry in result["objects"]} == {"Namespace web": "created", "ServiceAccount web/app": "created"}
    assert any("check mode could not validate ServiceAccount web/app" in message for message in result["warned"])


def _our_namespace_holding(*objects):
    return FakeApiServer(
        _object("Namespace", "web", labels=MANAGED),
        _object("ServiceAccount", "app", "web", labels=MANAGED),
        _object("ServiceAccount", "worker", "web", labels=MANAGED),
        # What Kubernetes makes in every namespace, and what goes with its owner or is history.
        _object("ServiceAccount", "default", "web"),
        _object("ConfigMap", "kube-root-ca.crt", "web"),
        dict(_object("Secret", "default-token-x", "web", annotations={"kubernetes.io/service-account.name": "default"}), type=TOKEN),
        _object("Event", "app.1", "web"),
        _object("Deployment", "rs-owned", "web", ownerReferences=[{"kind": "Deployment", "name": "x"}]),
        *objects,
    )


def test_removal_deletes_our_accounts_then_our_namespace_when_it_holds_nothing_else(monkeypatch, capsys):
    server = _our_namespace_holding()
    result = _run(monkeypatch, capsys, server, {"state": "absent", "service_accounts": ACCOUNTS["service_accounts"][:2]})
    assert [write[1] for write in server.writes] == [("ServiceAccount", "web", "app"), ("ServiceAccount", "web", "worker"), ("Namespace", None, "web")]
    assert result["changed"] is True and result["kept_namespaces"] == []


@pytest.mark.parametrize(("extra", "reason"), [
    (_object("ConfigMap", "app-settings", "web"), "ConfigMap/app-settings"),
    # A token Secret of another account is an application's credential, not the namespace's own.
    (dict(_object("Secret", "app-token", "web", annotations={"kubernetes.io/service-account.name": "app2"}), type=TOKEN),
     "Secret/app-token"),
    (_object("ServiceAccount", "app2", "web"), "ServiceAccount/app2"),
])
def test_a_namespace_holding_an_application_object_is_kept_and_named(monkeypatch, capsys, extra, reason):
    server = _our_namespace_holding(extra)
    result = _run(monkeypatch, capsys, server, {"state": "absent", "service_accounts": ACCOUNTS["service_accounts"][:2]})
    assert ("Namespace", None, "web") in server.objects and ("delete", ("Namespace", None, "web"), False) not in server.writes
    assert result["kept_namespaces"] == [{"name": "web", "objects": [reason]}]
    assert any(message.startswith("namespace web was created by the collection but is kept") and reason in message for message in result["warned"])


@pytest.mark.parametrize("server_args", [{"unlistable": ["Deployment"]}, {"undiscovered": ["metrics.k8s.io/v1beta1 (503)"]}])
def test_what_cannot_be_read_keeps_the_namespace(monkeypatch, capsys, server_args):
    server = _our_namespace_holding()
    server.unlistable, server.undiscovered = set(server_args.get("unlistable", ())), server_args.get("undiscovered", [])
    result = _run(monkeypatch, capsys, server, {"state": "absent", "service_accounts": ACCOUNTS["service_accounts"][:2]})
    assert ("Namespace", None, "web") in server.objects
    (kept,) = result["kept_namespaces"]
    assert kept["name"] == "web" and ("could not list" in kept["objects"][0] or "discovery failed" in kept["objects"][0])


def test_removal_never_deletes_what_the_collection_did_not_create(monkeypatch, capsys):
    server = FakeApiServer(_object("Namespace", "web"), _object("ServiceAccount", "app", "web"))
    result = _run(monkeypatch, capsys, server, {"state": "absent", "service_accounts": [{"namespace": "web", "name": "app"}]})
    assert server.writes == [] and result["changed"] is False and len(server.objects) == 2


@pytest.mark.parametrize(("entry", "field"), [
    ({"namespace": "Web", "name": "app"}, "service_accounts[0].namespace"),
    ({"namespace": "web", "name": "app$(whoami)"}, "service_accounts[0].name"),
])
def test_invalid_names_are_refused_before_the_cluster_is_asked(run_offline, entry, field):
    result = run_offline(gmsa_service_accounts, {"service_accounts": [entry]})
    assert result["failed"] and result["msg"].startswith(f"{field}: ")
