# Copyright: Contributors to the wincontainers.gmsa collection
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reconcile many objects in one module run: server-side apply, check mode, diff, ownership.

The service layer between the modules and :class:`_k8s.Cluster`:

- ``prefetch`` lists the objects of a kind in one request, so a rerun that changes nothing costs one request
  per kind instead of one per object;
- ``apply`` skips the request when the live object already holds every desired field *and* carries the
  digest of the same desired manifest (the digest catches fields removed from the manifest, which a subset
  test cannot see); otherwise it server-side applies, as a dry run (``dryRun=All``) in check mode;
- ``changed`` compares the object before and after with server bookkeeping (managedFields,
  resourceVersion, status...) removed, so defaults the API server fills in are not changes;
- the diff shows those normalized objects with every Secret value replaced by a marker;
- ``apply_all`` and ``delete_all`` send the writes of many objects a few at a time (:data:`WRITE_CONCURRENCY`), and
  when one fails they start no more and say which failed and which were not attempted.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.wincontainers.gmsa.plugins.module_utils.cluster._client import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ApiError,
    Cluster,
    object_ref,
)

DIGEST_ANNOTATION = "wincontainers.gmsa/applied-digest"
HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"
_BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
# Writes in flight at once: enough to overlap the round trips with the server's work, and a small part of the
# seats of the priority level the requests land in (kube-apiserver's default 600 seats give global-default, where
# users' requests go, about 49 and workload-low, where service accounts' go, about 245: k8s.io/apiserver
# pkg/apis/flowcontrol/bootstrap/default.go). Beyond its seats a level queues, and beyond its queues answers 429
# with Retry-After, which the client honours.
WRITE_CONCURRENCY = 8


# A replace names the version it replaces; a controller's status write in between is met by reading again.
_ADOPT_ATTEMPTS = 3


class Conflict(Exception):
    """The cluster holds objects this run must not change (raised before anything is changed), or another writer
    changed them while this run waited on them."""


class BatchFailed(ApiError):
    """Writes of a batch failed; ``str()`` names each failed object, the outcomes name every object of the batch."""

    @classmethod
    def of(cls, failures: list[str], skipped: int) -> BatchFailed:
        return cls("; ".join(failures) + (f"; {skipped} more objects were not attempted (listed in objects)" if skipped else ""))


@dataclass
class Outcome:
    """What happened to one object: ``created``, ``updated``, ``unchanged``, ``deleted``, ``kept`` (not ours),
    ``adopted`` (someone else's, replaced by ours when explicitly asked), ``failed`` or ``not attempted`` (after a
    failure in the same batch)."""

    ref: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed(self) -> bool:
        return self.action in ("created", "updated", "deleted", "adopted")


# What an object of this collection belongs to: its component (e.g. gmsa-credspec) and instance (the credspec).
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CREDSPEC_COMPONENT = "gmsa-credspec"
# The grants (ClusterRoles, RoleBindings) this collection made for credspecs.
CREDSPEC_GRANTS_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{NAME_LABEL}={CREDSPEC_COMPONENT}"


def is_managed(obj: dict[str, Any] | None) -> bool:
    return bool(obj) and (obj["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def credspecs_with_grants(cluster: Cluster) -> list[str]:
    """The credspecs whose ClusterRoles this collection holds, by their owner label.

    Without the CRD these are the credspecs a deletion of the CRD took with it: the grants outlive them.
    """
    roles = cluster.list("ClusterRole", label_selector=CREDSPEC_GRANTS_SELECTOR)
    return sorted({(role["metadata"].get("labels") or {}).get(INSTANCE_LABEL) for role in roles} - {None})


def lost_credspecs_message(names: list[str]) -> str:
    return f"credspecs {', '.join(names)} were deleted with it (their ClusterRoles remain)"


def _digest(obj: dict[str, Any]) -> str:
    # Secret values stay out of the digest: it is visible to anyone who can read the object's metadata. The
    # subset test in apply() still compares them.
    if obj.get("kind") == "Secret":
        obj = dict(obj, data={key: HIDDEN for key in obj.get("data") or {}})
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def with_digest(desired: dict[str, Any]) -> dict[str, Any]:
    """The manifest to send: the desired object plus the digest annotation of exactly that object.

    Only the object, its metadata and annotations are new; the rest is shared with ``desired`` (a deep copy of
    each of thousands of objects was a fifth of a large rerun's time).
    """
    metadata = desired["metadata"]
    annotations = dict(metadata.get("annotations") or {}, **{DIGEST_ANNOTATION: _digest(desired)})
    return dict(desired, metadata=dict(metadata, annotations=annotations))


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` holds every field of ``desired`` with the same value (lists element by element)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(key in live and contains(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(contains(item, want) for item, want in zip(live, desired))
    return live == desired


def normalize(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object without bookkeeping: status, managedFields, versions, and the digest annotation."""
    if obj is None:
        return None
    result = {key: value for key, value in obj.items() if key != "status"}
    metadata = {key: value for key, value in obj["metadata"].items() if key not in _BOOKKEEPING}
    annotations = {key: value for key, value in (metadata.get("annotations") or {}).items() if key != DIGEST_ANNOTATION}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    result["metadata"] = metadata
    return result


def redact(obj: dict[str, Any] | None, other: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A normalized copy fit for --diff: Secret values become markers (``<hidden, changed>`` when they differ from ``other``)."""
    result = normalize(obj)
    if result is None or result.get("kind") != "Secret":
        return result
    result = copy.deepcopy(result)
    other_data = ((other or {}).get("data") or {}) if other is not None else None
    for key, value in (result.get("data") or {}).items():
        result["data"][key] = HIDDEN_CHANGED if other_data is not None and other_data.get(key) != value else HIDDEN
    result.pop("stringData", None)
    return result


def _slim(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object without managedFields, which nothing here reads and which are often its largest part."""
    if obj is None or "managedFields" not in obj.get("metadata", {}):
        return obj
    return dict(obj, metadata={key: value for key, value in obj["metadata"].items() if key != "managedFields"})


class Reconciler:
    """Applies and deletes objects for one module run and remembers what it did.

    ``keep_diff`` False keeps no object in the outcomes (a run without --diff needs only their names and actions).
    """

    def __init__(self, cluster: Cluster, check_mode: bool, keep_diff: bool = True) -> None:
        self.cluster = cluster
        self.check_mode = check_mode
        self.keep_diff = keep_diff
        self.outcomes: list[Outcome] = []
        self.unvalidated: list[str] = []
        self._known: dict[tuple[str, str | None, str], dict[str, Any] | None] = {}
        self._listed: set[tuple[str, str | None]] = set()

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str | None, str]:
        return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]

    def prefetch(
        self, kind: str, namespace: str | None = None, expect: list[dict[str, Any]] | None = None, metadata_only: bool = False, **selectors: str
    ) -> list[dict[str, Any]]:
        """List a kind in one request; later lookups of the listed objects cost nothing.

        Without selectors (``label_selector``, ``field_selector``) the listing is complete for ``namespace`` (all
        namespaces when None), so any object not in it is known not to exist. With them, only the objects in
        ``expect`` (which the selectors would have matched) are known not to exist when missing.
        ``metadata_only`` listings tell which objects exist and whose they are; they never replace a whole object
        already known.
        """
        items = [_slim(item) for item in self.cluster.list(kind, namespace, metadata_only=metadata_only, **selectors)]
        for item in items:
            if metadata_only:
                self._known.setdefault(self._key(item), item)
            else:
                self._known[self._key(item)] = item
        if not selectors:
            self._listed.add((kind, namespace))
        for obj in expect or ():
            self._known.setdefault(self._key(obj), None)
        return items

    def known(self, obj: dict[str, Any]) -> bool:
        """Whether the live state of ``obj`` is known without another request."""
        kind, namespace, _name = key = self._key(obj)
        return key in self._known or (kind, namespace) in self._listed or (kind, None) in self._listed

    def live(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live object named like ``obj``, or None."""
        key = self._key(obj)
        if key not in self._known:
            kind, namespace, name = key
            # Known without being in _known: a complete listing did not have it.
            self._known[key] = None if self.known(obj) else _slim(self.cluster.get(kind, name, namespace))
        return self._known[key]

    @property
    def changed(self) -> bool:
        return any(outcome.changed for outcome in self.outcomes)

    def _record(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome if self.keep_diff or not outcome.changed else Outcome(outcome.ref, outcome.action, None, None))
        return outcome

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Make the object match ``desired``; return the live object (predicted in check mode)."""
        return self._record(self._apply(desired, with_digest(desired))).after

    def apply_all(self, *waves: list[dict[str, Any]]) -> None:
        """:meth:`apply` each object, the writes :data:`WRITE_CONCURRENCY` at a time. Raises :class:`BatchFailed`.

        Each wave starts when the one before has finished, so its objects may depend on theirs; the objects of one
        wave must not depend on each other. After a failure, later waves are not attempted.
        """

        def settle(desired: dict[str, Any]) -> Callable[[], Outcome] | None:
            stamped = with_digest(desired)
            # Unchanged objects are settled here, without a thread; an unknown one is read by its write's thread.
            before = self.live(desired) if self.known(desired) else None
            if before is not None and contains(before, stamped):
                self._record(Outcome(object_ref(desired), "unchanged", before, before))
                return None
            return functools.partial(self._apply, desired, stamped)

        self._run_waves(waves, settle)

    def create_all(self, *waves: list[dict[str, Any]]) -> None:
        """Create each object that does not exist, in waves as :meth:`apply_all`; one that exists is left exactly as it is.

        Unlike an apply, a create never takes over an object someone made between the read and the write (the API
        server answers 409 AlreadyExists), so nobody else's object gets the collection's labels.
        """

        def settle(desired: dict[str, Any]) -> Callable[[], Outcome] | None:
            before = self.live(desired)
            if before is not None:
                self._record(Outcome(object_ref(desired), "unchanged", before, before))
                return None
            return functools.partial(self._create, desired)

        self._run_waves(waves, settle)

    def _run_waves(self, waves: tuple[list[dict[str, Any]], ...], settle: Callable[[dict[str, Any]], Callable[[], Outcome] | None]) -> None:
        for position, objects in enumerate(waves):
            writes = [(object_ref(desired), write) for desired in objects if (write := settle(desired)) is not None]
            failures, skipped = self._run_all(writes)
            if failures:
                for obj in (obj for later in waves[position + 1:] for obj in later):
                    self._record(Outcome(object_ref(obj), "not attempted", None, None))
                    skipped += 1
                raise BatchFailed.of(failures, skipped)

    def _apply(self, desired: dict[str, Any], stamped: dict[str, Any]) -> Outcome:
        before = self.live(desired)
        if before is not None and contains(before, stamped):
            return Outcome(object_ref(desired), "unchanged", before, before)
        after = self._server_apply(stamped, before)
        action = "created" if before is None else ("unchanged" if normalize(before) == normalize(after) else "updated")
        if not self.check_mode:
            self._known[self._key(desired)] = after = _slim(after)
        return Outcome(object_ref(desired), action, before, after)

    def _run_all(self, writes: list[tuple[str, Callable[[], Outcome]]]) -> tuple[list[str], int]:
        """Run ``(object, write)`` pairs on a few threads; record each outcome in the order of ``writes``.

        After the first failure no more writes start; those in flight finish. The outcomes then name every object:
        what was done, ``failed`` and ``not attempted``. Returns the failures' messages and how many were not attempted.
        """
        if not writes:
            return [], 0
        workers = max(1, min(WRITE_CONCURRENCY, self.cluster.connection_pool_size, len(writes)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(write) for _ref, write in writes]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
        failures, skipped = [], 0
        for (ref, _write), future in zip(writes, futures):
            if future.cancelled():
                skipped += 1
                self._record(Outcome(ref, "not attempted", None, None))
            elif future.exception() is not None:
                failures.append(str(future.exception()))
                self._record(Outcome(ref, "failed", None, None))
            else:
                self._record(future.result())
        return failures, skipped

    def create(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Create ``desired``, which this run found absent; return it. Raises :class:`Conflict` when another writer
        created it since the read (409): an apply would overwrite theirs, and each run would go on with its own."""
        return self._record(self._create(with_digest(desired), taken_is_conflict=True)).after

    def _create(self, desired: dict[str, Any], taken_is_conflict: bool = False) -> Outcome:
        try:
            after = self.cluster.create(desired, dry_run=self.check_mode)
        except ApiError as error:
            if error.status == 409 and taken_is_conflict:
                raise Conflict(
                    f"conflict: {object_ref(desired)} already exists: another writer (a second run at the same time?) created it after "
                    "this run found none; rerun to converge"
                ) from None
            if error.status == 409:
                # Made by someone else since the read: theirs, left as it is.
                kind, namespace, name = key = self._key(desired)
                live = self._known[key] = _slim(self.cluster.get(kind, name, namespace))
                return Outcome(object_ref(desired), "unchanged", live, live)
            if self._predicted(desired, error):
                return Outcome(object_ref(desired), "created", None, desired)
            raise
        if not self.check_mode:
            self._known[self._key(desired)] = after = _slim(after)
        return Outcome(object_ref(desired), "created", None, after)

    def _server_apply(self, stamped: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
        try:
            return self.cluster.apply(stamped, dry_run=self.check_mode)
        except ApiError as error:
            if before is None and self._predicted(stamped, error):
                return stamped
            raise

    def _predicted(self, new: dict[str, Any], error: ApiError) -> bool:
        """Whether the failed dry run of a new object stands for a prediction, which is then noted as not validated.

        In check mode a new object's namespace or CRD may be planned by this very run, so its dry run cannot succeed
        yet (404): the object is predicted from the manifest.
        """
        if self.check_mode and error.status == 404:
            self.unvalidated.append(f"{object_ref(new)}: {error}")
            return True
        return False

    def adopt(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Make someone else's object exactly ``desired``, keeping its identity (uid, a Service's clusterIP).

        A replace, not an apply: apply would merge, leaving the other manager's fields (a Service selector's
        ``app`` key, a chart label) in place beside ours.
        """
        kind, namespace, name = self._key(desired)
        stamped = with_digest(desired)
        for attempt in range(_ADOPT_ATTEMPTS):
            # Read just before: controllers keep writing status (a PodDisruptionBudget's during the hand-over).
            before = self.cluster.get(kind, name, namespace)
            stamped["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
            try:
                after = self.cluster.replace(stamped, dry_run=self.check_mode)
                break
            except ApiError as error:
                if error.status != 409 or attempt == _ADOPT_ATTEMPTS - 1:
                    raise
        self._record(Outcome(object_ref(desired), "adopted", before, after))
        if not self.check_mode:
            self._known[self._key(desired)] = after
        return after

    def predict_adoption(self, obj: dict[str, Any]) -> None:
        """Check mode: record that ``obj``, someone else's, would be adopted (a hand-over cannot be dry-run)."""
        before = self.live(obj)
        self._record(Outcome(object_ref(obj), "adopted", before, before))

    def forget(self, obj: dict[str, Any]) -> None:
        """Drop what is known of ``obj``, so the next lookup asks the API server (it changed meanwhile)."""
        self._known.pop(self._key(obj), None)

    def delete(self, obj: dict[str, Any], force: bool = False) -> bool:
        """Delete the object if it exists and this collection created it with the labels ``obj`` carries (or ``force``).

        Returns whether a delete was sent (dry run in check mode).
        """
        if not self._deletable(obj, force):
            return False
        self._record(self._delete(obj))
        return True

    def delete_all(self, objects: list[dict[str, Any]]) -> None:
        """:meth:`delete` each object, :data:`WRITE_CONCURRENCY` at a time. Raises :class:`BatchFailed`."""
        failures, skipped = self._run_all([(object_ref(obj), functools.partial(self._delete, obj)) for obj in objects if self._deletable(obj)])
        if failures:
            raise BatchFailed.of(failures, skipped)

    def _deletable(self, obj: dict[str, Any], force: bool = False) -> bool:
        """Whether ``obj`` exists and may be deleted; an object that exists and may not is recorded as ``kept``."""
        before = self.live(obj)
        if before is None:
            return False
        if not (force or (is_managed(before) and contains(before["metadata"].get("labels") or {}, obj["metadata"].get("labels") or {}))):
            self._record(Outcome(object_ref(obj), "kept", before, before))
            return False
        return True

    def _delete(self, obj: dict[str, Any]) -> Outcome:
        before = self.live(obj)
        self.cluster.delete(obj, dry_run=self.check_mode)
        if not self.check_mode:
            self._known[self._key(obj)] = None
        return Outcome(object_ref(obj), "deleted", before, None)

    def diff(self) -> list[dict[str, Any]]:
        """One --diff entry per changed object, secrets hidden."""
        return [
            {
                "before_header": outcome.ref,
                "after_header": outcome.ref,
                "before": redact(outcome.before, outcome.after) or {},
                "after": redact(outcome.after, outcome.before) or {},
            }
            for outcome in self.outcomes
            if outcome.changed
        ]

    def summary(self) -> list[dict[str, str]]:
        """``[{object, action}]`` for the module result, in the order the objects were handled."""
        return [{"object": outcome.ref, "action": outcome.action} for outcome in self.outcomes]

    def warnings(self) -> list[str]:
        """What the user should know: predictions check mode could not validate, objects left because not ours."""
        messages = [f"check mode could not validate {detail}" for detail in self.unvalidated]
        kept = [outcome.ref for outcome in self.outcomes if outcome.action == "kept"]
        if kept:
            messages.append("left in place because this collection did not create them: " + ", ".join(kept))
        return messages

    def result(self, diff: bool) -> dict[str, Any]:
        """The module result's ``changed``, ``objects`` and, when asked for, ``diff``."""
        result: dict[str, Any] = {"changed": self.changed, "objects": self.summary()}
        if diff:
            result["diff"] = self.diff()
        return result
