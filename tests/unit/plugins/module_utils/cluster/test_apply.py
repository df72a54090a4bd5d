"""Unit tests for the reconcile layer: when to write, what counts as a change, what a diff may show."""

import copy
import threading
import time

import pytest
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import ApiError
from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._apply import (
    DIGEST_ANNOTATION,
    HIDDEN,
    HIDDEN_CHANGED,
    WRITE_CONCURRENCY,
    BatchFailed,
    Reconciler,
    contains,
    normalize,
    redact,
    with_digest,
)
from tests.unit.plugins.stand_in_cluster import StandInCluster

MANAGED = {"app.kubernetes.io/managed-by": "wincontainers.gmsa"}


class FakeCluster(StandInCluster):
    """Stands in for _k8s.Cluster: keeps objects in a dict and records the writes."""

    connection_pool_size = 10

    def __init__(self, objects=()):
        self.objects = {self._key(obj): copy.deepcopy(obj) for obj in objects}
        self.calls = []

    def get(self, kind, name, namespace=None):
        self.calls.append(("get", kind, name))
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
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


def _services(count, **labels):
    return [dict(_service(labels=labels or None), metadata=dict(_service(labels=labels or None)["metadata"], name=f"svc{index:03d}")) for index in range(count)]


class SlowCluster(FakeCluster):
    """Each write takes a while; records how many were in flight at once, and fails the objects named in ``failing``."""

    def __init__(self, objects=(), failing=()):
        super().__init__(objects)
        self.failing = set(failing)
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def _slowly(self, write, obj, dry_run):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.01)
            if obj["metadata"]["name"] in self.failing:
                raise ApiError(f"applying Service ns/{obj['metadata']['name']}: forbidden by RBAC: no", 403, "Forbidden")
            return write(obj, dry_run)
        finally:
            with self.lock:
                self.in_flight -= 1

    def apply(self, obj, dry_run=False):
        return self._slowly(super().apply, obj, dry_run)

    def delete(self, obj, dry_run=False):
        return self._slowly(super().delete, obj, dry_run)


def test_a_batch_is_written_a_few_objects_at_a_time_and_reported_in_order():
    cluster = SlowCluster()
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    reconciler.apply_all(_services(40))
    assert 1 < cluster.most_in_flight <= WRITE_CONCURRENCY
    assert [entry["object"] for entry in reconciler.summary()] == [f"Service ns/svc{index:03d}" for index in range(40)]
    assert {entry["action"] for entry in reconciler.summary()} == {"created"}
    assert len(cluster.objects) == 40


def test_a_rerun_of_a_batch_settles_unchanged_objects_without_a_request():
    cluster = SlowCluster()
    Reconciler(cluster, check_mode=False).apply_all(_services(20))
    cluster.calls.clear()
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    reconciler.apply_all(_services(20))
    assert cluster.calls == [("list", "Service")] and not reconciler.changed


def test_no_more_threads_than_the_client_keeps_connections():
    cluster = SlowCluster()
    cluster.connection_pool_size = 2
    Reconciler(cluster, check_mode=False).apply_all(_services(12))
    assert cluster.most_in_flight <= 2


def test_a_failed_write_stops_the_batch_and_every_object_is_named():
    cluster = SlowCluster(failing={"svc005"})
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    with pytest.raises(BatchFailed) as failed:
        reconciler.apply_all(_services(200))
    message = str(failed.value)
    assert "applying Service ns/svc005: forbidden by RBAC" in message
    actions = {entry["object"]: entry["action"] for entry in reconciler.summary()}
    assert len(actions) == 200 and actions["Service ns/svc005"] == "failed"
    skipped = [name for name, action in actions.items() if action == "not attempted"]
    # Writes started before the failure finish; none starts after it.
    assert len(skipped) >= 200 - 5 - 2 * WRITE_CONCURRENCY and f"{len(skipped)} more objects were not attempted" in message
    assert {action for name, action in actions.items() if action not in ("failed", "not attempted")} == {"created"}
    assert len(cluster.objects) == sum(action == "created" for action in actions.values())
    assert reconciler.changed


def test_a_batch_of_deletes_keeps_what_is_not_ours():
    ours, theirs = _services(10, **MANAGED), _services(1, team="x")
    theirs[0]["metadata"]["name"] = "theirs"
    cluster = SlowCluster(ours + theirs)
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    reconciler.delete_all(ours + theirs + [dict(_service(), metadata=dict(_service()["metadata"], name="gone"))])
    actions = [entry["action"] for entry in reconciler.summary()]
    assert actions == ["kept"] + ["deleted"] * 10
    assert list(cluster.objects) == [("Service", "ns", "theirs")]


def test_without_diff_the_outcomes_keep_no_object():
    reconciler = Reconciler(FakeCluster(), check_mode=False, keep_diff=False)
    reconciler.apply_all(_services(3))
    assert all(outcome.before is None and outcome.after is None for outcome in reconciler.outcomes)
    assert reconciler.changed


def test_listed_objects_are_kept_without_their_managed_fields():
    cluster = FakeCluster([dict(_service(), metadata=dict(_service()["metadata"], managedFields=[{"manager": "x"}]))])
    reconciler = Reconciler(cluster, check_mode=False)
    reconciler.prefetch("Service")
    assert "managedFields" not in reconciler.live(_service())["metadata"]


def test_a_metadata_listing_never_replaces_a_whole_object():
    secret = dict(_secret("b2xk"), metadata={"name": "identity", "namespace": "ns", "labels": MANAGED})

    class MetadataLists(FakeCluster):
        def list(self, kind, namespace=None, label_selector=None, field_selector=None, metadata_only=False):
            items = super().list(kind, namespace, label_selector, field_selector)
            return [{"kind": kind, "metadata": item["metadata"]} for item in items] if metadata_only else items

    reconciler = Reconciler(MetadataLists([secret]), check_mode=False)
    reconciler.prefetch("Secret", "ns", label_selector="app.kubernetes.io/managed-by=wincontainers.gmsa")
    reconciler.prefetch("Secret", "ns", metadata_only=True)
    assert reconciler.live(secret)["data"] == secret["data"]


def test_stamping_leaves_the_desired_manifest_as_it_was():
    desired = dict(_service(), metadata=dict(_service()["metadata"], annotations={"keep": "me"}))
    before = copy.deepcopy(desired)
    stamped = with_digest(desired)
    assert desired == before
    assert stamped["metadata"]["annotations"]["keep"] == "me" and DIGEST_ANNOTATION in stamped["metadata"]["annotations"]
    assert {key: value for key, value in stamped.items() if key != "metadata"} == {key: value for key, value in desired.items() if key != "metadata"}
