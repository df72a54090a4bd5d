"""Unit tests for the reconcile layer: when to write, what counts as a change, what a diff may show."""

import copy

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import (
    DIGEST_ANNOTATION,
    HIDDEN,
    HIDDEN_CHANGED,
    Reconciler,
    contains,
    normalize,
    redact,
    with_digest,
)

MANAGED = {"app.kubernetes.io/managed-by": "wincontainers.gmsa"}


class FakeCluster:
    """Stands in for _k8s.Cluster: keeps objects in a dict and records the writes."""

    def __init__(self, objects=()):
        self.objects = {self._key(obj): copy.deepcopy(obj) for obj in objects}
        self.calls = []

    @staticmethod
    def _key(obj):
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]

    def get(self, kind, name, namespace=None):
        self.calls.append(("get", kind, name))
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        self.calls.append(("list", kind))
        return [copy.deepcopy(obj) for key, obj in self.objects.items() if key[0] == kind and namespace in (None, key[1])]

    def apply(self, obj, dry_run=False):
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"], dry_run))
        live = copy.deepcopy(obj)
        # What the API server adds on its own: bookkeeping and defaults.
        live["metadata"].update(resourceVersion="2", uid="u", managedFields=[{"manager": "wincontainers.gmsa"}])
        live.setdefault("spec", {}).setdefault("defaulted", True)
        if not dry_run:
            self.objects[self._key(obj)] = live
        return copy.deepcopy(live)

    def delete(self, obj, dry_run=False):
        self.calls.append(("delete", obj["kind"], obj["metadata"]["name"], dry_run))
        if not dry_run:
            del self.objects[self._key(obj)]
        return True


def _service(value="a", labels=None):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns", "labels": dict(labels or MANAGED)}, "spec": {"value": value}}


def _secret(password):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "identity", "namespace": "ns"}, "data": {"username": "dQ==", "password": password}}


def test_contains_is_a_subset_test_with_lists_compared_by_position():
    assert contains({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}}, {"b": {"c": [1, {"d": 2}]}})
    assert not contains({"a": [1, 2]}, {"a": [1]})
    assert not contains({"a": {"b": 1}}, {"a": {"b": 2}})
    assert not contains({}, {"a": None})


def test_normalize_drops_what_the_server_maintains():
    live = {
        "kind": "X",
        "metadata": {"name": "n", "resourceVersion": "1", "managedFields": [], "uid": "u", "annotations": {DIGEST_ANNOTATION: "d", "keep": "me"}},
        "status": {"ready": True},
        "spec": {},
    }
    assert normalize(live) == {"kind": "X", "metadata": {"name": "n", "annotations": {"keep": "me"}}, "spec": {}}


def test_redact_hides_every_secret_value_and_marks_the_changed_ones():
    before, after = _secret("b2xk"), _secret("bmV3")
    assert redact(after, before)["data"] == {"username": HIDDEN, "password": HIDDEN_CHANGED}
    assert redact(after, None)["data"] == {"username": HIDDEN, "password": HIDDEN}
    assert redact(_service(), None)["spec"] == {"value": "a"}


def test_digest_never_depends_on_secret_values():
    assert with_digest(_secret("b2xk"))["metadata"]["annotations"] == with_digest(_secret("bmV3"))["metadata"]["annotations"]


def test_new_object_is_created():
    cluster = FakeCluster()
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.apply(_service())
    assert reconciler.summary() == [{"object": "Service ns/svc", "action": "created"}]
    assert reconciler.changed


def test_rerun_sends_nothing_when_live_object_holds_the_same_manifest():
    cluster = FakeCluster()
    Reconciler(cluster, check_mode=False).apply(_service())
    cluster.calls.clear()
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    reconciler.apply(_service())
    assert cluster.calls == [("list", "Service")]
    assert not reconciler.changed


def test_field_removed_from_the_manifest_is_applied_even_though_live_still_contains_the_rest():
    cluster = FakeCluster()
    desired = _service()
    desired["spec"]["extra"] = "x"
    Reconciler(cluster, check_mode=False).apply(desired)
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.apply(_service())
    assert ("apply", "Service", "svc", False) in cluster.calls
    assert reconciler.summary()[0]["action"] == "updated"


def test_check_mode_is_a_server_dry_run_and_changes_nothing():
    cluster = FakeCluster([_service("old")])
    reconciler = Reconciler(cluster, check_mode=True)
    reconciler.apply(_service("new"))
    assert cluster.calls[-1] == ("apply", "Service", "svc", True)
    assert cluster.objects[("Service", "ns", "svc")]["spec"]["value"] == "old"
    assert reconciler.summary() == [{"object": "Service ns/svc", "action": "updated"}]
    (entry,) = reconciler.diff()
    assert entry["before"]["spec"]["value"] == "old" and entry["after"]["spec"]["value"] == "new"


def test_check_mode_predicts_objects_whose_namespace_or_crd_this_run_would_create():
    class MissingNamespace(FakeCluster):
        def apply(self, obj, dry_run=False):
            raise ApiError("applying Service ns/svc: namespaces \"ns\" not found", 404, "NotFound")

    reconciler = Reconciler(MissingNamespace(), check_mode=True)
    predicted = reconciler.apply(_service())
    assert predicted["spec"] == {"value": "a"}
    assert reconciler.summary()[0]["action"] == "created"
    assert "not found" in reconciler.unvalidated[0]


def test_errors_outside_check_mode_propagate():
    class Forbidden(FakeCluster):
        def apply(self, obj, dry_run=False):
            raise ApiError("applying Service ns/svc: forbidden by RBAC: no", 403, "Forbidden")

    with pytest.raises(ApiError, match="forbidden"):
        Reconciler(Forbidden(), check_mode=False).apply(_service())


def test_delete_touches_only_objects_this_collection_created_with_the_same_labels():
    ours, foreign = _service(), _service(labels={"team": "x"})
    foreign["metadata"]["name"] = "theirs"
    other_install = _service(labels=dict(MANAGED, instance="b"))
    other_install["metadata"]["name"] = "other"
    cluster = FakeCluster([ours, foreign, other_install])
    reconciler = Reconciler(cluster, check_mode=False)
    for obj in (ours, foreign, dict(other_install, metadata=dict(other_install["metadata"], labels=dict(MANAGED, instance="a")))):
        reconciler.delete(obj)
    assert [(entry["object"], entry["action"]) for entry in reconciler.summary()] == [
        ("Service ns/svc", "deleted"),
        ("Service ns/theirs", "kept"),
        ("Service ns/other", "kept"),
    ]
    assert set(cluster.objects) == {("Service", "ns", "theirs"), ("Service", "ns", "other")}


def test_missing_object_is_not_reported_on_delete():
    reconciler = Reconciler(FakeCluster(), check_mode=False)
    reconciler.delete(_service())
    assert reconciler.summary() == [] and not reconciler.changed


def test_a_selected_listing_knows_only_what_it_returned_or_was_told_to_expect():
    present, absent, unknown = _service(), _service(), _service()
    absent["metadata"]["name"], unknown["metadata"]["name"] = "absent", "unknown"
    cluster = FakeCluster([present])
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service", "ns", expect=[absent], label_selector="app.kubernetes.io/managed-by=wincontainers.gmsa")
    assert reconciler.known(present) and reconciler.known(absent) and not reconciler.known(unknown)
    cluster.calls.clear()
    assert reconciler.live(absent) is None and reconciler.live(present)["spec"] == {"value": "a"}
    assert reconciler.live(unknown) is None
    assert cluster.calls == [("get", "Service", "unknown")]
