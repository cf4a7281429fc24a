"""The emulated Kubernetes API server: kmock's HTTP server and discovery, our object store.

`EmulatedApiServer` is a `kmock.KubernetesScaffold` (discovery of the declared resources,
Kubernetes-style errors, kmock's request log and DSL) whose resource endpoints are served by
`ObjectStore` instead of kmock's own emulator, which lacks what kopf needs (see store.py and
README.md). kmock's DSL still works for fault injection: a reaction added by a test, e.g.
`server['patch', kmock.resource('apps/v1/statefulsets')] << 500`, takes priority over the
store, and such a request then changes nothing (kmock 0.8's emulator changes the object even
when a reaction intercepts the request).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import traceback
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, parsing, rendering  # kmock 0.8 has no public alias

from tests.k8s.harness import (
    eviction,
    fieldvalidation,
    openapi,
    patching,
    podlogs,
    rbac,
    scale,
    tables,
)
from tests.k8s.harness.apitls import token_subject
from tests.k8s.harness.resources import ALL_VERBS, ResourceSpec
from tests.k8s.harness.store import ApiError, Obj, ObjectStore, WatchEvent

logger = logging.getLogger(__name__)

_NAMESPACE_PATH = re.compile(
    r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?"
)
_POD_LOG_PATH = re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")
_OPENAPI_V3 = re.compile(r"/openapi/v3(?:/(?P<key>.+?))?/?")
# Bodies the store reads (kmock parses JSON and YAML); kubectl's typed clients send
# protobuf for built-in kinds, which the harness does not decode.
_BODY_TYPES = ("", "application/json", "application/yaml", "*/*")
_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
}
# kmock keeps every request it served and matches each new one against its reactions by
# scanning that whole log (`request in payload._source`: a linear scan per request, so
# quadratic over a module's life). A long module slowed to a crawl: in a 40-kill loop the
# API server's handling became ~95% of the harness thread and the leader's Service switch
# grew from 0.3 s to 6 s. Only the newest requests are kept for kmock's log and DSL, and
# each check still costs ~60 us per request in the log, so very few.
REQUEST_LOG_KEPT = 8
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _resource_key(spec: ResourceSpec) -> kmock.resource:
    return kmock.resource(spec.group, spec.version, spec.plural)


@attrs.define(kw_only=True)
class EmulatedApiServer(kmock.KubernetesScaffold):
    store: ObjectStore = attrs.field(factory=ObjectStore)
    mirror_history: int = 20
    """How many versions of each object the kmock-style `objects` mirror keeps."""
    log_path: podlogs.LogPath | None = None
    """Where the kubelet writes a container's output: serves `pods/<name>/log`."""
    internal_errors: list[str] = attrs.field(factory=list, init=False)
    """Tracebacks of unexpected failures while serving (a harness bug, not an API error)."""
    _mirror: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    _in_flight: set[int] = attrs.field(factory=set, init=False)
    """id() of the requests being served, watches aside (kept in kmock's log meanwhile)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Every resource answer is JSON, watch streams too: client-go decodes a stream by its
        # Content-Type (kmock's default for streams is octet-stream). Set here, once: a
        # Response returned by the handler would change the shared reaction's headers.
        json_header = {"Content-Type": "application/json"}
        self.fallback[self._is_resource_request] << json_header << self._serve_resource
        for spec in self.store.registry:
            self._declare(spec, True)
        self.store.registry_observers.append(self._declare)
        self.store.observers.append(self._mirror_event)

    # ---- kmock integration -------------------------------------------------------------------

    @property
    def objects(self) -> kmock.ObjectsArray:
        """kmock-style view of the objects (recent versions), for kmock-style assertions."""
        return self._mirror

    def _declare(self, spec: ResourceSpec, added: bool) -> None:
        key = _resource_key(spec)
        if not added:
            if key in self.resources:
                del self.resources[key]
            return
        self.resources[key] = kmock.ResourceInfo(
            namespaced=spec.namespaced,
            kind=spec.kind,
            singular=spec.singular or spec.kind.lower(),
            verbs=set(ALL_VERBS),
            shortnames=set(spec.short_names),
            categories=set(spec.categories),
            subresources=set(spec.subresources),
        )

    def _mirror_event(self, event: WatchEvent) -> None:
        key = (_resource_key(event.resource), event.namespace, event.name)
        if event.type == "DELETED":
            if key in self._mirror:
                self._mirror[key].delete()
            return
        if key not in self._mirror:
            self._mirror[key] = event.object
            return
        entry = self._mirror[key]
        if entry.deleted:
            entry.create(event.object)
        else:
            entry.history.append(event.object)
        if len(entry.history) > self.mirror_history:
            del entry.history[: len(entry.history) - self.mirror_history]

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """Discovery of one group-version (`/api/v1`, `/apis/apps/v1`). kmock's own copies
        the kind's short names and verbs onto its subresources (kubectl then warns that
        `rkc` could mean `raftclusters/status`) and names the core group `/v1`."""
        assert request.resource is not None
        group, version = request.resource.group or "", request.resource.version or ""
        served = [s for s in self.store.registry if s.group == group and s.version == version]
        if not served and group:
            raise kmock.KubernetesResourceNotFoundError()
        resources: list[dict[str, Any]] = []
        for spec in sorted(served, key=lambda s: s.plural):
            resources.append(
                {
                    "name": spec.plural,
                    "singularName": spec.singular or spec.kind.lower(),
                    "namespaced": spec.namespaced,
                    "kind": spec.kind,
                    "verbs": sorted(ALL_VERBS),
                    "shortNames": sorted(spec.short_names),
                    "categories": sorted(spec.categories),
                }
            )
            for sub in sorted(spec.subresources):
                entry: dict[str, Any] = {
                    "name": f"{spec.plural}/{sub}",
                    "singularName": "",
                    "namespaced": spec.namespaced,
                    "kind": spec.kind,
                    "verbs": _SUBRESOURCE_VERBS.get(sub, ["create"]),
                }
                if sub == "scale":
                    entry.update(group="autoscaling", version="v1", kind="Scale")
                resources.append(entry)
        return {
            "apiVersion": "v1",
            "kind": "APIResourceList",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _serve_openapi(self, path: str) -> aiohttp.web.Response | None:
        """`/openapi/v2` and `/openapi/v3[/<group-version>]` (harness/openapi.py)."""
        if path.rstrip("/") == "/openapi/v2":
            return aiohttp.web.Response(
                body=openapi.v2_document(), content_type=openapi.V2_CONTENT_TYPE
            )
        match = _OPENAPI_V3.fullmatch(path)
        if match is None:
            return None
        specs = list(self.store.registry)
        if match["key"] is None:
            return aiohttp.web.json_response(openapi.index_document(specs))
        document = openapi.group_version_document(specs, match["key"])
        if document is None:
            status = ApiError(404, "NotFound", f"no OpenAPI document for {match['key']}")
            return aiohttp.web.json_response(status.status(), status=404)
        return aiohttp.web.json_response(document)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "GET" and raw_request.path.startswith("/openapi/"):
            document = self._serve_openapi(raw_request.path)
            if document is not None:
                return document
        match = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            response = await super().__call__(raw_request)
            if (
                _POD_LOG_PATH.fullmatch(raw_request.path)
                and response.status == 200
                and not response.prepared
            ):
                response.content_type = "text/plain"
            return response
        # kmock 0.8's path parser fails on the namespaces resource itself (/api/v1/namespaces
        # and /api/v1/namespaces/NAME): it takes "namespaces/NAME" as a namespace prefix.
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        path = parsing.ParsedPath("", "v1", "namespaces", None, match["name"], match["sub"])
        method = kmock.method(raw_request.method)
        request = rendering.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=body.decode(errors="replace"),
            action=parsing.guess_k8s(path, method, dict(raw_request.query)),
            resource=kmock.resource("", "v1", "namespaces"),
            namespace=None,
            name=match["name"],
            subresource=match["sub"],
        )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except rendering.StreamingError as e:
            response = e.args[0]
            if response.prepared:
                await response.write_eof()
            assert isinstance(response, aiohttp.web.StreamResponse)
            return response

    def _trim_request_log(self) -> None:
        """Keep the newest REQUEST_LOG_KEPT requests of kmock's logs, and every request
        still being served (kmock may look for it again after an await); amortised:
        trimmed when twice that."""
        logs = [self._requests, *(payload._requests for payload in self._payloads)]
        for log in logs:
            if len(log) > 2 * REQUEST_LOG_KEPT:
                older = [r for r in log[:-REQUEST_LOG_KEPT] if id(r) in self._in_flight]
                log[:] = older + log[-REQUEST_LOG_KEPT:]

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # A watch is matched while it is the newest request and then streams for minutes:
        # kept in the log, it would be scanned by every later request.
        if request.params.get("watch") not in ("true", "1"):
            self._in_flight.add(id(request))
        self._trim_request_log()
        try:
            return await self._dispatch(request)
        finally:
            self._in_flight.discard(id(request))

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Skip kmock's own object handling (KubernetesEmulator._handle): the store serves it.
        try:
            return await apps.RawHandler._handle(self, request)
        except ApiError as e:
            return aiohttp.web.json_response(e.status(), status=e.code)
        except Exception as e:
            if isinstance(
                e, kmock.KubernetesError | NotImplementedError | rendering.StreamingError
            ):
                raise
            self.internal_errors.append(traceback.format_exc())
            logger.exception("emulated API server failed on %s %s", request.method, request.url)
            status = ApiError(500, "InternalError", f"emulated API server bug: {e!r}")
            return aiohttp.web.json_response(status.status(), status=500)

    @staticmethod
    def _is_resource_request(request: rendering.Request) -> bool:
        return request.resource is not None and bool(request.resource.plural)

    # ---- serving -----------------------------------------------------------------------------

    def _serve_resource(self, request: rendering.Request) -> Any:
        assert request.resource is not None
        res = request.resource
        spec = self.store.registry.find(res.group or "", res.version or "", res.plural or "")
        if spec is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, name, sub = request.namespace, request.name, request.subresource
        if namespace is not None and not spec.namespaced:
            raise ApiError(404, "NotFound", f"{spec.kind} is cluster-scoped")
        params: Mapping[str, str] = request.params
        dry_run = params.get("dryRun") == "All"
        method = str(request.method.value if hasattr(request.method, "value") else request.method)
        subject = token_subject(_header(request.headers, "Authorization"))
        if subject is not None:  # a pod's service account: RBAC applies
            rbac.authorize(
                self.store, subject,
                verb=rbac.request_verb(method, name, dict(params)),
                group=spec.group, resource=f"{spec.plural}/{sub}" if sub else spec.plural,
                namespace=namespace, name=name,
            )  # fmt: skip
        table = tables.has_table(spec) and tables.wants_table(_header(request.headers, "Accept"))
        include_object = params.get("includeObject", "Metadata")
        if method in ("POST", "PUT") and _content_type(request) not in _BODY_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the emulated API server reads JSON and YAML bodies, not "
                f"{_content_type(request)!r}",
            )
        merge_patch = method == "PATCH" and _content_type(request) == "application/merge-patch+json"
        if (method in ("POST", "PUT") or merge_patch) and sub != "scale":
            fieldvalidation.check(spec, request.data, params.get("fieldValidation"))
        if sub == "scale" and name is not None and method in ("GET", "PATCH", "PUT"):
            self._check_subresource(spec, sub)
            return self._serve_scale(spec, namespace, name, method, request, dry_run)
        if method == "GET" and sub == "log" and name is not None and spec.key == "v1/pods":
            return self._serve_log(namespace, name, params)
        if method == "GET":
            if params.get("watch") in ("true", "1"):
                as_table = table and sub is None
                return self._watch(spec, namespace, params, name, as_table, include_object)
            if name is None:
                items = self.store.list(
                    spec, namespace, params.get("labelSelector"), params.get("fieldSelector")
                )
                if table and sub is None:
                    return tables.as_table(spec, items, self.store.resource_version, include_object)
                return {
                    "apiVersion": spec.api_version,
                    "kind": f"{spec.kind}List",
                    "metadata": {"resourceVersion": self.store.resource_version},
                    "items": items,
                }
            self._check_subresource(spec, sub)
            obj = self.store.get(spec, namespace, name)
            if obj is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{spec.plural} "{name}" not found',
                    {"name": name, "kind": spec.plural},
                )
            if table and sub is None:
                return tables.as_table(spec, [obj], self.store.resource_version, include_object)
            return obj
        if method == "POST":
            if name is not None and sub == "eviction" and spec.plural == "pods" and namespace:
                return eviction.evict(self.store, namespace, name, request.data)
            if name is not None:
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    f"POST on {spec.plural}/{name}{'/' + sub if sub else ''} is not emulated",
                )
            return self.store.create(spec, request.data, namespace, dry_run=dry_run)
        if name is None and method != "DELETE":
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        if method == "PATCH":
            assert name is not None
            self._check_subresource(spec, sub)
            ctype = _content_type(request)
            patch_type = _PATCH_TYPES.get(ctype)
            if patch_type is None:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {ctype!r}",
                )
            return self.store.patch(
                spec,
                namespace,
                name,
                request.data,
                patch_type=patch_type,
                subresource=sub,
                dry_run=dry_run,
            )
        if method == "PUT":
            assert name is not None
            self._check_subresource(spec, sub)
            return self.store.replace(
                spec, namespace, name, request.data, subresource=sub, dry_run=dry_run
            )
        if method == "DELETE":
            options = dict(request.data) if isinstance(request.data, dict) else {}
            grace = params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
            propagation = params.get("propagationPolicy", options.get("propagationPolicy"))
            if propagation is None and (
                options.get("orphanDependents") or params.get("orphanDependents") == "true"
            ):
                propagation = "Orphan"
            kwargs: dict[str, Any] = {
                "grace_period_seconds": int(grace) if grace is not None else None,
                "propagation_policy": propagation,
                "preconditions": options.get("preconditions"),
                "dry_run": dry_run or options.get("dryRun") == ["All"],
            }
            if name is not None:
                if sub:
                    raise ApiError(405, "MethodNotAllowed", "DELETE on a subresource")
                return self.store.delete(spec, namespace, name, **kwargs)
            deleted = []
            for obj in self.store.list(
                spec, namespace, params.get("labelSelector"), params.get("fieldSelector")
            ):
                meta = obj["metadata"]
                deleted.append(
                    self.store.delete(spec, meta.get("namespace"), meta["name"], **kwargs)
                )
            return {
                "apiVersion": spec.api_version,
                "kind": f"{spec.kind}List",
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": deleted,
            }
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _serve_log(self, namespace: str | None, name: str, params: Mapping[str, str]) -> bytes:
        pod = self.store.get("v1/pods", namespace, name)
        if pod is None or self.log_path is None:
            raise ApiError(
                404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}
            )
        return podlogs.container_log(pod, params, self.log_path)  # text/plain: __call__

    def _serve_scale(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        method: str,
        request: rendering.Request,
        dry_run: bool,
    ) -> Obj:
        """GET, PATCH and PUT of `<kind>/<name>/scale` (harness/scale.py)."""
        current = self.store.get(spec, namespace, name)
        if current is None:
            raise ApiError(
                404,
                "NotFound",
                f'{spec.plural} "{name}" not found',
                {"name": name, "kind": spec.plural},
            )
        if method == "GET":
            return scale.scale_of(spec, current)
        if method == "PUT":
            wanted = request.data
        else:
            patch_type = _PATCH_TYPES.get(_content_type(request))
            if patch_type not in ("merge", "strategic", "json"):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"a scale patch cannot be {_content_type(request)!r}",
                )
            # A Scale has no lists: a strategic merge patch is a merge patch on it.
            try:
                if patch_type == "json":
                    wanted = patching.json_patch(scale.scale_of(spec, current), request.data)
                else:
                    if not isinstance(request.data, dict):
                        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                    wanted = patching.merge_patch(scale.scale_of(spec, current), request.data)
            except patching.PatchError as e:
                raise ApiError(422, "Invalid", f"the patch cannot be applied: {e}") from None
        replicas = scale.replicas_of(wanted)
        expected = (wanted.get("metadata") or {}).get("resourceVersion")
        updated = self.store.update(
            spec,
            namespace,
            name,
            lambda obj: scale.with_replicas(spec, obj, replicas),
            expected_rv=str(expected) if expected else None,
            dry_run=dry_run,
        )
        return scale.scale_of(spec, updated)

    @staticmethod
    def _check_subresource(spec: ResourceSpec, sub: str | None) -> None:
        if sub is not None and sub not in spec.subresources:
            raise ApiError(
                404,
                "NotFound",
                f"{spec.plural}/{sub}: the subresource is not served by the emulated API server",
            )

    def _watch(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        params: Mapping[str, str],
        name: str | None,
        as_table: bool = False,
        include_object: str = "Metadata",
    ) -> AsyncIterator[Any]:
        field_selector = params.get("fieldSelector")
        if name is not None:  # GET /…/pods/NAME?watch=true (deprecated, still used by clients)
            term = f"metadata.name={name}"
            field_selector = f"{field_selector},{term}" if field_selector else term
        # Subscribing here (not in the generator) makes a 410 Gone a plain error response.
        sub, first = self.store.watch(
            spec,
            namespace=namespace,
            label_selector=params.get("labelSelector"),
            field_selector=field_selector,
            resource_version=params.get("resourceVersion"),
        )
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        initial_end = params.get("sendInitialEvents") == "true"
        store = self.store

        def shown(obj: Obj) -> Obj:
            # `kubectl get -w` asks for Tables: each event carries a one-row Table.
            if not as_table:
                return obj
            return tables.as_table(spec, [obj], store.resource_version, include_object)

        async def stream() -> AsyncIterator[Any]:
            deadline = time.monotonic() + timeout if timeout else None
            try:
                yield b""  # send the headers now, even if nothing happens for a while
                for event in first:
                    yield {"type": event.type, "object": shown(event.object)}
                if initial_end:
                    yield {
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": spec.api_version,
                            "kind": spec.kind,
                            "metadata": {
                                "resourceVersion": store.resource_version,
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                while True:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    try:
                        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                        async with asyncio.timeout(remaining):
                            change = await sub.get()
                    except TimeoutError:
                        return
                    if change is None:
                        return
                    yield {"type": change.type, "object": shown(change.object)}
            finally:
                store.unsubscribe(sub)

        return stream()


def _content_type(request: rendering.Request) -> str:
    return _header(request.headers, "Content-Type").split(";")[0].strip().lower()


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), "")
