"""The object store behind the emulated API server: what kmock 0.8 leaves out.

kmock 0.8 stores objects as plain merged dicts. Kubernetes clients (kopf above all) rely on
more than that, and this store provides it:

- `metadata.uid`, `creationTimestamp`, `generation` on create and a cluster-wide, increasing
  `resourceVersion` bumped on every write (kopf waits for the watch event carrying the
  version its patch produced, and JSON-patches with a `test` on it);
- optimistic concurrency: a write carrying a stale `resourceVersion` answers 409 Conflict;
- the `status` subresource: writes to `/status` change only `status`, writes to the object
  never change `status`, and only non-metadata/status changes bump `generation`;
- finalizers and `deletionTimestamp`; graceful pod deletion (a pod bound to a node stays,
  terminating, until the kubelet confirms with a zero grace period); Foreground/Orphan
  propagation through the `foregroundDeletion`/`orphan` finalizers the garbage collector
  honours;
- no-op writes neither bump the version nor emit an event;
- watch streams with label/field selectors (objects leaving a selector are DELETED for that
  watcher), resumption from a resourceVersion, and 410 Gone once that version is compacted.

Everything here is synchronous and runs on the emulator's event loop, so each write is
atomic; watchers receive events through asyncio queues in write order.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import datetime
import re
import secrets
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.harness.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.k8s.harness.resources import ResourceRegistry, ResourceSpec, specs_from_crd
from tests.k8s.harness.selectors import FieldSelector, LabelSelector, SelectorError

Obj = dict[str, Any]
Key = tuple[str | None, str]  # (namespace, name); namespace is None for cluster-scoped kinds


class ApiError(Exception):
    """An API failure with its HTTP status and Kubernetes `reason`."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": self.details,
        }


def not_found(spec: ResourceSpec, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{spec.plural}{"." + spec.group if spec.group else ""} "{name}" not found',
        {"name": name, "group": spec.group, "kind": spec.plural},
    )


def invalid(spec: ResourceSpec, name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{spec.kind} "{name}" is invalid: {message}',
        {"name": name, "group": spec.group, "kind": spec.kind},
    )


def conflict(spec: ResourceSpec, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {spec.plural} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": spec.group, "kind": spec.plural},
    )


def rfc3339(moment: datetime.datetime | None = None) -> str:
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAMED_KINDS = {"namespaces", "services"}
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _check_qualified_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"key {key!r}: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"key {key!r}: the name part must be at most 63 alphanumerics, '-', '_' or '.',"
            " starting and ending with an alphanumeric"
        )
    return None


def validate_metadata(spec: ResourceSpec, obj: Obj) -> None:
    meta = obj["metadata"]
    name = meta["name"]
    if spec.plural in _LABEL_NAMED_KINDS:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            raise invalid(
                spec,
                name,
                "metadata.name: must be a DNS-1123 label (at most 63 "
                "lowercase alphanumerics or '-', starting and ending alphanumeric)",
            )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise invalid(
            spec,
            name,
            "metadata.name: must be a DNS-1123 subdomain (lowercase "
            "alphanumerics, '-' or '.', starting and ending alphanumeric)",
        )
    for field_name in ("labels", "annotations"):
        values = meta.get(field_name)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise invalid(spec, name, f"metadata.{field_name}: must be a map of strings")
        for key, value in values.items():
            problem = _check_qualified_key(key)
            if problem:
                raise invalid(spec, name, f"metadata.{field_name}: {problem}")
            if not isinstance(value, str):
                raise invalid(
                    spec, name, f"metadata.{field_name}[{key}]: must be a string, got {value!r}"
                )
            if field_name == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                raise invalid(
                    spec,
                    name,
                    f"metadata.labels[{key}]: invalid value {value!r} "
                    "(at most 63 alphanumerics, '-', '_' or '.', starting and ending "
                    "with an alphanumeric)",
                )
    refs = meta.get("ownerReferences") or []
    if not isinstance(refs, list):
        raise invalid(spec, name, "metadata.ownerReferences: must be a list")
    controllers = 0
    for ref in refs:
        for required in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(required):
                raise invalid(spec, name, f"metadata.ownerReferences: {required} is required")
        controllers += 1 if ref.get("controller") else 0
    if controllers > 1:
        raise invalid(
            spec,
            name,
            "metadata.ownerReferences: only one reference can have controller set to true",
        )
    finalizers = meta.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise invalid(spec, name, "metadata.finalizers: must be a list of strings")


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _without_version(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


@dataclass
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    resource: ResourceSpec
    object: Obj
    old: Obj | None
    rv: int

    @property
    def namespace(self) -> str | None:
        ns = self.object.get("metadata", {}).get("namespace")
        return ns if isinstance(ns, str) else None

    @property
    def name(self) -> str:
        return str(self.object.get("metadata", {}).get("name", ""))


@dataclass(eq=False)
class Subscription:
    """A watcher's queue. `None` in the queue means the store is shutting down."""

    resources: frozenset[ResourceSpec] | None  # None: every kind
    namespace: str | None = None
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def _visible(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def project(self, event: WatchEvent) -> WatchEvent | None:
        """The event as this watcher sees it through its selectors (or None)."""
        if self.resources is not None and event.resource not in self.resources:
            return None
        if self.labels.empty and not self.fields.requirements and self.namespace is None:
            return event
        now = self._visible(event.object)
        if event.type == "ADDED":
            return event if now else None
        if event.type == "DELETED":
            return event if now else None
        before = self._visible(event.old)
        if before and now:
            return event
        if now:
            return WatchEvent("ADDED", event.resource, event.object, event.old, event.rv)
        if before:
            return WatchEvent("DELETED", event.resource, event.object, event.old, event.rv)
        return None

    async def get(self) -> WatchEvent | None:
        return await self.queue.get()


Admission = Callable[[str, ResourceSpec, Obj, "Obj | None", "ObjectStore"], None]
"""(operation CREATE|UPDATE, resource, new object (mutable), old object, store): default,
validate (raise ApiError) or allocate; runs before the write is committed."""


class ObjectStore:
    SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

    def __init__(
        self, registry: ResourceRegistry | None = None, *, history_limit: int = 2000
    ) -> None:
        self.registry = registry or ResourceRegistry()
        self._objects: dict[ResourceSpec, dict[Key, Obj]] = defaultdict(dict)
        self._rv = 0
        self._history: dict[ResourceSpec, deque[WatchEvent]] = defaultdict(
            lambda: deque(maxlen=history_limit)
        )
        self._compacted: dict[ResourceSpec, int] = defaultdict(int)
        self._subscriptions: set[Subscription] = set()
        self.admission: list[Admission] = []
        self.observers: list[Callable[[WatchEvent], None]] = []
        """Called synchronously after every committed write, before watchers are woken."""
        self.registry_observers: list[Callable[[ResourceSpec, bool], None]] = []
        """Called when a CustomResourceDefinition adds (True) or removes (False) a kind."""
        namespaces = self.registry.resolve("v1/namespaces")
        for ns in self.SYSTEM_NAMESPACES:
            self.create(namespaces, {"metadata": {"name": ns}})

    # ---- reads -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def resolve(self, ref: str | ResourceSpec) -> ResourceSpec:
        return self.registry.resolve(ref)

    def _key(self, spec: ResourceSpec, namespace: str | None, name: str) -> Key:
        return (namespace if spec.namespaced else None, name)

    def get(self, ref: str | ResourceSpec, namespace: str | None, name: str) -> Obj | None:
        spec = self.resolve(ref)
        obj = self._objects[spec].get(self._key(spec, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self,
        ref: str | ResourceSpec,
        namespace: str | None = None,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> list[Obj]:
        spec = self.resolve(ref)
        labels = (
            label_selector
            if isinstance(label_selector, LabelSelector)
            else LabelSelector.parse(label_selector)
        )
        fields = (
            field_selector
            if isinstance(field_selector, FieldSelector)
            else FieldSelector.parse(field_selector)
        )
        out = []
        for (ns, _), obj in sorted(
            self._objects[spec].items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        ):
            if namespace is not None and spec.namespaced and ns != namespace:
                continue
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                out.append(copy.deepcopy(obj))
        return out

    def all_objects(self) -> Iterable[tuple[ResourceSpec, Obj]]:
        """Every stored object (not copied: read-only use on the emulator loop)."""
        for spec, objects in list(self._objects.items()):
            for obj in list(objects.values()):
                yield spec, obj

    # ---- writes ------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _commit(self, event_type: str, spec: ResourceSpec, obj: Obj, old: Obj | None) -> None:
        key = self._key(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if event_type == "DELETED":
            self._objects[spec].pop(key, None)
        else:
            self._objects[spec][key] = obj
        event = WatchEvent(
            event_type,
            spec,
            copy.deepcopy(obj),
            copy.deepcopy(old) if old is not None else None,
            self._rv,
        )
        history = self._history[spec]
        if history.maxlen is not None and len(history) == history.maxlen:
            self._compacted[spec] = history[0].rv
        history.append(event)
        if spec.plural == "customresourcedefinitions" and spec.group == "apiextensions.k8s.io":
            self._crd_changed(event)
        for observer in list(self.observers):
            observer(event)
        for sub in list(self._subscriptions):
            projected = sub.project(event)
            if projected is not None:
                sub.queue.put_nowait(projected)

    def _admit(self, operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
        for hook in list(self.admission):
            hook(operation, spec, new, old, self)

    def create(
        self,
        ref: str | ResourceSpec,
        body: Any,
        namespace: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        spec = self.resolve(ref)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"the body of a {spec.kind} must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if (
            obj.get("apiVersion", spec.api_version) != spec.api_version
            or obj.get("kind", spec.kind) != spec.kind
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the body is a {obj.get('apiVersion')}/"
                f"{obj.get('kind')}, not a {spec.api_version}/{spec.kind}",
            )
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
        if spec.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not "
                    "match the namespace sent on the request",
                )
            ns = namespace or body_ns
            if not ns:
                raise ApiError(400, "BadRequest", f"a {spec.kind} needs a namespace")
            self._check_namespace_open(ns)
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(
                400, "BadRequest", "resourceVersion should not be set on objects to be created"
            )
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    spec, "", "metadata.name: Required value: name or generateName is required"
                )
            for _ in range(100):
                suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                candidate = f"{prefix}{suffix}"
                if self._key(spec, meta.get("namespace"), candidate) not in self._objects[spec]:
                    meta["name"] = candidate
                    break
        name = meta["name"]
        if self._key(spec, meta.get("namespace"), name) in self._objects[spec]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{spec.plural}{"." + spec.group if spec.group else ""} "{name}" already exists',
                {"name": name, "group": spec.group, "kind": spec.plural},
            )
        for transient in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            meta.pop(transient, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339()
        meta["generation"] = 1
        if spec.has_status:
            obj.pop("status", None)  # status is written through the subresource only
        validate_metadata(spec, obj)
        self._admit("CREATE", spec, obj, None)
        if dry_run:
            return obj
        meta["resourceVersion"] = str(self._next_rv())
        self._commit("ADDED", spec, obj, None)
        return copy.deepcopy(obj)

    def _check_namespace_open(self, namespace: str) -> None:
        ns_obj = self._objects[self.resolve("v1/namespaces")].get((None, namespace))
        if ns_obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if ns_obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace "
                f"{namespace} because it is being terminated",
            )

    def update(
        self,
        ref: str | ResourceSpec,
        namespace: str | None,
        name: str,
        transform: Callable[[Obj], Any],
        *,
        subresource: str | None = None,
        expected_rv: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Read-modify-write: `transform` gets a copy of the current object and returns the
        new one; the subresource rules, immutable metadata and admission apply."""
        spec = self.resolve(ref)
        key = self._key(spec, namespace, name)
        current = self._objects[spec].get(key)
        if current is None:
            raise not_found(spec, name)
        if subresource not in (None, "status") or (subresource == "status" and not spec.has_status):
            raise ApiError(
                404,
                "NotFound",
                f"{spec.plural}/{subresource} is not served by the emulated API server",
            )
        try:
            proposed = transform(copy.deepcopy(current))
        except PatchError as e:
            if e.test_failed:
                raise ApiError(422, "Invalid", str(e)) from None
            raise ApiError(422, "Invalid", f"the patch cannot be applied: {e}") from None
        if not isinstance(proposed, dict) or not isinstance(proposed.get("metadata", {}), dict):
            raise invalid(spec, name, "the result is not an object with metadata")
        if expected_rv and expected_rv != current["metadata"]["resourceVersion"]:
            raise conflict(spec, name)
        new = self._merge_update(spec, current, proposed, subresource)
        validate_metadata(spec, new)
        self._admit("UPDATE", spec, new, current)
        if _without_version(new) == _without_version(current):
            return copy.deepcopy(current)
        if subresource is None and _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            if (
                spec.plural == "namespaces"
                and not spec.group
                and (new.get("spec") or {}).get("finalizers")
            ):
                self._commit("MODIFIED", spec, new, current)
            else:
                self._commit("DELETED", spec, new, current)
        else:
            self._commit("MODIFIED", spec, new, current)
        return copy.deepcopy(new)

    def _merge_update(
        self, spec: ResourceSpec, current: Obj, proposed: Obj, subresource: str | None
    ) -> Obj:
        if subresource == "status":
            new = copy.deepcopy(current)
            if proposed.get("status") is None:
                new.pop("status", None)
            else:
                new["status"] = proposed["status"]
            return new
        new = proposed
        if spec.has_status:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for fixed in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(
                    422,
                    "Forbidden",
                    f'{spec.kind} "{meta["name"]}": no new '
                    "finalizers can be added if the object is being deleted, found "
                    f"new finalizers {sorted(added)}",
                )
        if meta.get("finalizers") == []:
            meta.pop("finalizers")
        for empty in ("labels", "annotations", "ownerReferences"):
            if meta.get(empty) in ({}, []):
                meta.pop(empty)
        return new

    def patch(
        self,
        ref: str | ResourceSpec,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """patch_type: merge (RFC 7386), json (RFC 6902) or strategic."""
        spec = self.resolve(ref)
        expected = None
        if patch_type in ("merge", "strategic"):
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", f"a {patch_type} patch must be a JSON object")
            expected = (patch.get("metadata") or {}).get("resourceVersion")
        if patch_type == "merge":

            def transform(obj: Obj) -> Any:
                return merge_patch(obj, patch)
        elif patch_type == "json":

            def transform(obj: Obj) -> Any:
                return json_patch(obj, patch)
        elif patch_type == "strategic":
            if not spec.builtin:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an "
                    "unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )

            def transform(obj: Obj) -> Any:
                return strategic_merge_patch(obj, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"patch type {patch_type!r} is not emulated (server-side apply is not supported)",
            )
        return self.update(
            spec,
            namespace,
            name,
            transform,
            subresource=subresource,
            expected_rv=str(expected) if expected else None,
            dry_run=dry_run,
        )

    def replace(
        self,
        ref: str | ResourceSpec,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        spec = self.resolve(ref)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"the body of a {spec.kind} must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) "
                f"does not match the name on the URL ({name})",
            )
        expected = meta.get("resourceVersion")

        def transform(_: Obj) -> Any:
            return copy.deepcopy(body)

        return self.update(
            spec,
            namespace,
            name,
            transform,
            subresource=subresource,
            expected_rv=str(expected) if expected else None,
            dry_run=dry_run,
        )

    def delete(
        self,
        ref: str | ResourceSpec,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        spec = self.resolve(ref)
        key = self._key(spec, namespace, name)
        current = self._objects[spec].get(key)
        if current is None:
            raise not_found(spec, name)
        meta = current["metadata"]
        for field_name in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != meta.get(field_name):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: {field_name} in "
                    f"precondition: {wanted}, {field_name} in object meta: "
                    f"{meta.get(field_name)}",
                )
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(400, "BadRequest", f"unknown propagationPolicy {propagation_policy!r}")
        is_pod = spec.plural == "pods" and not spec.group
        is_namespace = spec.plural == "namespaces" and not spec.group
        grace = 0
        if is_pod:
            pod_spec = current.get("spec") or {}
            default = pod_spec.get("terminationGracePeriodSeconds", 30)
            grace = int(grace_period_seconds if grace_period_seconds is not None else default)
            phase = (current.get("status") or {}).get("phase")
            if not pod_spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
        new = copy.deepcopy(current)
        new_meta = new["metadata"]
        finalizers = list(new_meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            # Already terminating: only a shorter grace period changes anything.
            old_grace = meta.get("deletionGracePeriodSeconds") or 0
            if not is_pod or grace >= old_grace:
                return copy.deepcopy(current)
            new_meta["deletionGracePeriodSeconds"] = grace
        else:
            if propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if propagation_policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            if finalizers:
                new_meta["finalizers"] = finalizers
            moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
            new_meta["deletionTimestamp"] = rfc3339(moment)
            new_meta["deletionGracePeriodSeconds"] = grace
            if is_namespace:
                new.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return new
        new_meta["resourceVersion"] = str(self._next_rv())
        blocked = (
            bool(finalizers)
            or new_meta.get("deletionGracePeriodSeconds")
            or (is_namespace and (new.get("spec") or {}).get("finalizers"))
        )
        self._commit("MODIFIED" if blocked else "DELETED", spec, new, current)
        return copy.deepcopy(new)

    def finalize_namespace(self, name: str) -> None:
        """The namespace controller's last step: drop spec.finalizers, which removes it."""

        def transform(obj: Obj) -> Obj:
            obj.setdefault("spec", {})["finalizers"] = []
            return obj

        spec = self.resolve("v1/namespaces")
        current = self._objects[spec].get((None, name))
        if current is None or not current["metadata"].get("deletionTimestamp"):
            return
        updated = self.update(spec, None, name, transform)
        if updated["metadata"].get("finalizers"):
            return
        if (None, name) in self._objects[spec]:
            obj = self._objects[spec][(None, name)]
            obj["metadata"]["resourceVersion"] = str(self._next_rv())
            self._commit("DELETED", spec, copy.deepcopy(obj), obj)

    # ---- watches -----------------------------------------------------------------------------

    def subscribe(self, refs: Iterable[str | ResourceSpec] | None) -> Subscription:
        """Every future event of these kinds, or of every kind with None (for controllers)."""
        sub = Subscription(frozenset(self.resolve(r) for r in refs) if refs is not None else None)
        self._subscriptions.add(sub)
        return sub

    def watch(
        self,
        ref: str | ResourceSpec,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> tuple[Subscription, builtins.list[WatchEvent]]:
        """A watcher and the events it must see first: synthetic ADDED events for the current
        objects (no or zero resourceVersion), or the retained events after resource_version.
        """
        spec = self.resolve(ref)
        try:
            sub = Subscription(
                frozenset([spec]),
                namespace if spec.namespaced else None,
                LabelSelector.parse(label_selector),
                FieldSelector.parse(field_selector),
            )
        except SelectorError as e:
            raise ApiError(400, "BadRequest", str(e)) from None
        first: builtins.list[WatchEvent] = []
        since = int(resource_version) if resource_version and resource_version.isdigit() else 0
        if since == 0:
            for obj in self._objects[spec].values():
                event = WatchEvent("ADDED", spec, copy.deepcopy(obj), None, self._rv)
                if sub.project(event) is not None:
                    first.append(event)
        else:
            if since < self._compacted[spec]:
                raise ApiError(
                    410, "Expired", f"too old resource version: {since} ({self._compacted[spec]})"
                )
            for event in self._history[spec]:
                if event.rv > since:
                    projected = sub.project(event)
                    if projected is not None:
                        first.append(projected)
        self._subscriptions.add(sub)
        return sub, first

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        self._subscriptions.discard(sub)

    def close(self) -> None:
        for sub in list(self._subscriptions):
            sub.queue.put_nowait(None)
            self.unsubscribe(sub)

    # ---- custom resource definitions ---------------------------------------------------------

    def _crd_changed(self, event: WatchEvent) -> None:
        try:
            new_specs = specs_from_crd(event.object) if event.type != "DELETED" else []
        except ValueError:
            return
        old_specs = specs_from_crd(event.old) if event.old is not None else []
        if event.type == "DELETED":
            old_specs = specs_from_crd(event.object)
        for spec in old_specs:
            if spec not in new_specs:
                for obj in list(self._objects[spec].values()):
                    obj["metadata"]["resourceVersion"] = str(self._next_rv())
                    self._commit("DELETED", spec, copy.deepcopy(obj), obj)
                self.registry.remove(spec)
                for observer in self.registry_observers:
                    observer(spec, False)
        for spec in new_specs:
            previous = self.registry.find(spec.group, spec.version, spec.plural)
            if previous is not None and previous != spec:
                # Same kind, new details (names, subresources): keep the stored objects.
                self._objects[spec] = self._objects.pop(previous, {})
                self._history[spec] = self._history.pop(previous, self._history[spec])
            self.registry.add(spec)
            for observer in self.registry_observers:
                observer(spec, True)
