# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""gmsa_workload against an in-memory API server whose controller rolls a Deployment out a few reads after a write:
what it applies, what it waits for, what it refuses to take over or delete. The lab runs it for real in the
workload stage (tests/integration/test_workload_module.py, test_site_playbook.py)."""

import copy
import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster import _waiter
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError
from ansible_collections.wincontainers.gmsa.plugins.modules import gmsa_workload
from tests.unit.plugins.stand_in_cluster import StandInCluster

MANAGED = {"app.kubernetes.io/managed-by": "wincontainers.gmsa"}


def deployment(name="iis", namespace="web", labels=None, image="iis:ltsc2022"):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }


def pod(name, node="win-0", deleting=False):
    metadata = {"name": name, "namespace": "web", "labels": {"app": "iis"}, **({"deletionTimestamp": "now"} if deleting else {})}
    return {"kind": "Pod", "metadata": metadata, "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


class FakeApiServer(StandInCluster):
    """Objects in a dict; a Deployment becomes Available ``rollout_reads`` reads after each write, its pods with it."""

    def __init__(self, *objects, rollout_reads=2, namespaces=("web",)):
        self.objects = {self._key(obj): copy.deepcopy(obj) for obj in objects}
        self.namespaces, self.rollout_reads = set(namespaces), rollout_reads
        self.writes, self.reads, self.pending = [], 0, 0

    def get(self, kind, name, namespace=None):
        self.reads += 1
        self.pending = max(0, self.pending - 1)
        obj = self.objects.get((kind, namespace, name))
        if obj is not None and kind == "Deployment" and not self.pending:
            generation = obj["metadata"].get("generation", 1)
            obj["status"] = {"observedGeneration": generation, "updatedReplicas": 1, "readyReplicas": 1,
                             "conditions": [{"type": "Available", "status": "True"}]}
        return copy.deepcopy(obj)

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
        assert kind == "Pod" and label_selector == "app=iis", (kind, label_selector)
        return [copy.deepcopy(obj) for key, obj in self.objects.items() if key[0] == "Pod" and key[1] == namespace]

    def apply(self, obj, dry_run=False):
        key = self._key(obj)
        if key[1] not in self.namespaces:
            raise ApiError(f"applying {key}: namespaces {key[1]} not found", 404)
        self.writes.append(("apply", key, dry_run))
        live = self.objects.get(key)
        after = copy.deepcopy(obj)
        after["metadata"]["generation"] = (live or {"metadata": {}})["metadata"].get("generation", 0) + 1
        if not dry_run:
            self.objects[key], self.pending = after, self.rollout_reads
        return copy.deepcopy(after)

    def delete(self, obj, dry_run=False):
        key = self._key(obj)
        self.writes.append(("delete", key, dry_run))
        if not dry_run:
            self.objects = {k: v for k, v in self.objects.items() if k != key and k[0] != "Pod"}
        return True


def _run(monkeypatch, capsys, server, args, check_mode=False):
    warned = []
    monkeypatch.setattr(gmsa_workload, "Cluster", server)
    monkeypatch.setattr(_waiter, "POLL_INTERVAL", 0)
    monkeypatch.setattr(AnsibleModule, "warn", lambda _module, message: warned.append(message))
    with patch_module_args(dict(args, _ansible_check_mode=check_mode)), pytest.raises(SystemExit):
        gmsa_workload.main()
    return dict(json.loads(capsys.readouterr().out), warned=warned)


def test_a_new_workload_is_applied_labelled_waited_for_and_its_pods_reported(monkeypatch, capsys):
    server = FakeApiServer(pod("iis-1"), pod("iis-0", deleting=True))
    result = _run(monkeypatch, capsys, server, {"definition": deployment()})
    assert result["changed"] is True and result["objects"] == [{"object": "Deployment web/iis", "action": "created"}]
    assert server.objects[("Deployment", "web", "iis")]["metadata"]["labels"] == MANAGED
    assert result["rollout"] == "1 of 1 replicas ready"
    # The pod being deleted is not among the workload's pods.
    assert result["pods"] == [{"name": "iis-1", "node": "win-0", "phase": "Running", "ready": True}]


def test_a_rerun_sends_no_write_and_reads_the_workload_once(monkeypatch, capsys):
    server = FakeApiServer(rollout_reads=0)
    _run(monkeypatch, capsys, server, {"definition": deployment()})
    writes, reads = len(server.writes), server.reads
    again = _run(monkeypatch, capsys, server, {"definition": deployment()})
    assert again["changed"] is False and len(server.writes) == writes
    # One read of the workload: the rollout's first check is the object that read returned.
    assert server.reads - reads == 1


def test_a_changed_manifest_is_applied_and_reported_with_its_diff(monkeypatch, capsys):
    server = FakeApiServer(rollout_reads=0)
    _run(monkeypatch, capsys, server, {"definition": deployment()})
    result = _run(monkeypatch, capsys, server, {"definition": deployment(image="iis:ltsc2025"), "_ansible_diff": True})
    assert result["objects"] == [{"object": "Deployment web/iis", "action": "updated"}]
    (diff,) = result["diff"]
    assert diff["after"]["spec"]["template"]["spec"]["containers"][0]["image"] == "iis:ltsc2025"
    assert diff["before"]["spec"]["template"]["spec"]["containers"][0]["image"] == "iis:ltsc2022"


def test_someone_elses_workload_of_that_name_is_refused_before_any_write(monkeypatch, capsys):
    theirs = deployment(labels={"team": "web"})
    server = FakeApiServer(theirs)
    result = _run(monkeypatch, capsys, server, {"definition": deployment()})
    assert result["failed"] and server.writes == []
    assert "Deployment web/iis exists and was not created by this collection" in result["msg"]
    live = server.objects[("Deployment", "web", "iis")]
    assert (live["metadata"], live["spec"]) == (theirs["metadata"], theirs["spec"])


def test_a_rollout_that_does_not_finish_fails_naming_what_is_missing(monkeypatch, capsys):
    server = FakeApiServer(rollout_reads=10**6)
    result = _run(monkeypatch, capsys, server, {"definition": deployment(), "wait_timeout": 0})
    assert result["failed"] and result["changed"] is True
    assert result["msg"].startswith("the rollout of Deployment web/iis not ready after 0 s: ")


def test_check_mode_dry_runs_and_predicts_a_workload_whose_namespace_does_not_exist_yet(monkeypatch, capsys):
    server = FakeApiServer(namespaces=())
    result = _run(monkeypatch, capsys, server, {"definition": deployment()}, check_mode=True)
    assert result["changed"] is True and server.objects == {} and result["pods"] == []
    assert any("check mode could not validate Deployment web/iis" in message for message in result["warned"])


def test_absent_deletes_our_workload_and_waits_for_its_pods(monkeypatch, capsys):
    server = FakeApiServer(dict(deployment(labels=MANAGED)), pod("iis-1"))
    result = _run(monkeypatch, capsys, server, {"definition": deployment(), "state": "absent"})
    assert result["changed"] is True and server.writes == [("delete", ("Deployment", "web", "iis"), False)]
    assert result["rollout"] == "the workload and its pods are gone"


def test_absent_never_deletes_a_workload_the_collection_did_not_create(monkeypatch, capsys):
    server = FakeApiServer(deployment(labels={"team": "web"}))
    result = _run(monkeypatch, capsys, server, {"definition": deployment(), "state": "absent"})
    assert result["changed"] is False and server.writes == []
    assert any("left in place because this collection did not create them: Deployment web/iis" in message for message in result["warned"])


@pytest.mark.parametrize(("definition", "field"), [
    (dict(deployment(), kind="Service"), "definition.kind"),
    (dict(deployment(), apiVersion="extensions/v1beta1"), "definition.apiVersion"),
    (dict(deployment(), metadata={"name": "iis"}), "definition.metadata.namespace"),
    (dict(deployment(), metadata={"name": "IIS;rm", "namespace": "web"}), "definition.metadata.name"),
])
def test_invalid_definitions_are_refused_before_the_cluster_is_asked(run_offline, definition, field):
    result = run_offline(gmsa_workload, {"definition": definition})
    assert result["failed"] and result["msg"].startswith(f"{field}: "), result["msg"]
