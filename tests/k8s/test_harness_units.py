"""Unit tests of the harness's pure parts and of the object store's API semantics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.harness.defaults import builtin_admission
from tests.k8s.harness.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.k8s.harness.podenv import (
    ContainerConfigError,
    command_line,
    expand_vars,
    mount_rewriter,
    resolve_env,
)
from tests.k8s.harness.selectors import FieldSelector, LabelSelector, SelectorError
from tests.k8s.harness.store import ApiError, ObjectStore

# ---- selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {"a": "b"}, True),
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (b, c),d", {"a": "c", "d": ""}, True),
        ("a in (b, c),d", {"a": "c"}, False),
        ("a notin (b),!e", {"a": "x"}, True),
        ("a notin (b),!e", {"a": "x", "e": "1"}, False),
        ("app.kubernetes.io/name=raftkv", {"app.kubernetes.io/name": "raftkv"}, True),
    ],
)
def test_label_selector_query_form(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(selector).matches(labels) is expected


def test_label_selector_api_form_and_service_form() -> None:
    sel = LabelSelector.from_api(
        {
            "matchLabels": {"a": "b"},
            "matchExpressions": [
                {"key": "role", "operator": "In", "values": ["leader"]},
                {"key": "gone", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches({"a": "b", "role": "leader"})
    assert not sel.matches({"a": "b", "role": "follower"})
    assert not sel.matches({"a": "b", "role": "leader", "gone": "x"})
    assert not LabelSelector.from_api(None).matches({"a": "b"})  # nil selects nothing
    assert LabelSelector.from_api({}).matches({"a": "b"})  # empty selects everything
    assert not LabelSelector.from_labels({}).matches({"a": "b"})  # a Service without selector


@pytest.mark.parametrize("bad", ["a=b,", "a in (b", "=b", "a b c", "a=b c"])
def test_label_selector_rejects_garbage(bad: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(bad)


def test_field_selector() -> None:
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Running"}, "spec": {"x": True}}
    assert FieldSelector.parse("metadata.name=p,status.phase!=Pending").matches(pod)
    assert not FieldSelector.parse("status.phase=Pending").matches(pod)
    assert FieldSelector.parse("spec.x=true,spec.missing=").matches(pod)


# ---- patches ---------------------------------------------------------------------------------


def test_merge_patch_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3], "k": None}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}  # not modified


def test_json_patch_rfc6902_and_failed_test() -> None:
    doc = {"metadata": {"resourceVersion": "7", "finalizers": ["x"]}, "l": [1, 2]}
    out = json_patch(
        doc,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "add", "path": "/l/-", "value": 3},
            {"op": "replace", "path": "/l/0", "value": 0},
            {"op": "remove", "path": "/metadata/finalizers"},
            {"op": "copy", "from": "/l", "path": "/m"},
            {"op": "move", "from": "/m", "path": "/n"},
            {"op": "add", "path": "/a~1b", "value": 1},
        ],
    )
    assert out == {"metadata": {"resourceVersion": "7"}, "l": [0, 2, 3], "n": [0, 2, 3], "a/b": 1}
    with pytest.raises(PatchError) as failed:
        json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "6"}])
    assert failed.value.test_failed
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_strategic_merge_patch_merges_keyed_lists() -> None:
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "1"},
            ]
        },
        "metadata": {"finalizers": ["f1"]},
    }
    patched = strategic_merge_patch(
        pod,
        {
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                ]
            },
            "metadata": {"finalizers": ["f2"]},
        },
    )
    assert patched["spec"]["containers"] == [
        {
            "name": "a",
            "image": "1",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        }
    ]
    assert patched["metadata"]["finalizers"] == ["f1", "f2"]


# ---- pod environment -------------------------------------------------------------------------


def test_expand_vars_like_kubernetes() -> None:
    env = {"A": "x", "B": "y"}
    assert expand_vars("--name=$(A)-$(B)", env) == "--name=x-y"
    assert expand_vars("$(UNDEFINED) $$(A) $(", env) == "$(UNDEFINED) $(A) $("


def test_resolve_env_downward_api_configmaps_and_order() -> None:
    pod = {
        "metadata": {"name": "demo-0", "namespace": "ns", "labels": {"app": "x"}},
        "status": {"podIP": "127.1.2.10"},
    }
    cms = {"cfg": {"data": {"initial": "a=b", "k": "v"}}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "INIT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "initial"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k", "optional": True}},
            },
            {"name": "URL", "value": "http://$(NAME):$(PORT)"},
            {"name": "PORT", "value": "7379"},
        ],
    }
    env = resolve_env(container, pod, cms.get, lambda _: None)
    assert env["NAME"] == "demo-0" and env["IP"] == "127.1.2.10" and env["APP"] == "x"
    assert env["INIT"] == "a=b" and env["CM_k"] == "v" and "OPT" not in env
    assert env["URL"] == "http://demo-0:$(PORT)"  # only earlier variables expand
    with pytest.raises(ContainerConfigError):
        resolve_env(
            {
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}
                ]
            },
            pod,
            cms.get,
            lambda _: None,
        )


def test_mount_rewriter_only_rewrites_whole_paths() -> None:
    rewrite = mount_rewriter([("/var/lib/raftkv", "/h/pvc"), ("/tmp", "/h/tmp")])
    assert rewrite("--data-dir=/var/lib/raftkv/data") == "--data-dir=/h/pvc/data"
    assert rewrite("/var/lib/raftkv") == "/h/pvc"
    assert (
        rewrite("ls -A /var/lib/raftkv/data && cp x /tmp/y") == "ls -A /h/pvc/data && cp x /h/tmp/y"
    )
    assert (
        rewrite("/tmpfoo /var/lib/raftkvx http://h/tmp") == "/tmpfoo /var/lib/raftkvx http://h/tmp"
    )


def test_command_line_uses_image_entrypoint_when_command_is_unset() -> None:
    container = {"image": "ghcr.io/org/raftkv:1.2", "args": ["serve", "--name=$(N)"]}
    assert command_line(container, {"raftkv": ["raftkv"]}, {"N": "a"}) == [
        "raftkv",
        "serve",
        "--name=a",
    ]
    with pytest.raises(ContainerConfigError):
        command_line({"image": "busybox"}, {"raftkv": ["raftkv"]}, {})


# ---- object store semantics ------------------------------------------------------------------


def _store() -> ObjectStore:
    store = ObjectStore()
    store.admission.append(builtin_admission)
    store.create("v1/namespaces", {"metadata": {"name": "ns"}})
    return store


def test_store_assigns_identity_and_bumps_resource_version_on_every_write() -> None:
    store = _store()
    cm = store.create("v1/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}}, "ns")
    meta = cm["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    patched = store.patch("v1/configmaps", "ns", "c", {"data": {"a": "2"}})
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    same = store.patch("v1/configmaps", "ns", "c", {"data": {"a": "2"}})  # no-op
    assert same["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as stale:
        store.patch(
            "v1/configmaps",
            "ns",
            "c",
            {"metadata": {"resourceVersion": meta["resourceVersion"]}, "data": {"a": "3"}},
        )
    assert stale.value.code == 409
    with pytest.raises(ApiError) as failed_test:
        store.patch(
            "v1/configmaps",
            "ns",
            "c",
            [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}],
            patch_type="json",
        )
    assert failed_test.value.code == 422
    with pytest.raises(ApiError) as exists:
        store.create("v1/configmaps", {"metadata": {"name": "c"}}, "ns")
    assert exists.value.code == 409
    with pytest.raises(ApiError) as no_ns:
        store.create("v1/configmaps", {"metadata": {"name": "c"}}, "nope")
    assert no_ns.value.code == 404


def test_store_status_subresource_is_separate_from_the_object() -> None:
    store = _store()
    rc = "raftkv.dev/v1alpha1/raftclusters"
    obj = store.create(
        rc,
        {"metadata": {"name": "r"}, "spec": {"replicas": 3}, "status": {"phase": "ignored"}},
        "ns",
    )
    assert "status" not in obj
    store.patch(
        rc,
        "ns",
        "r",
        {"status": {"phase": "Running"}, "spec": {"replicas": 9}},
        subresource="status",
    )
    after = store.get(rc, "ns", "r")
    assert after is not None
    assert after["status"] == {"phase": "Running"} and after["spec"]["replicas"] == 3
    assert after["metadata"]["generation"] == 1  # status writes do not bump generation
    store.patch(rc, "ns", "r", {"status": {"phase": "lost"}, "spec": {"replicas": 5}})
    after = store.get(rc, "ns", "r")
    assert after is not None
    assert after["status"] == {"phase": "Running"} and after["spec"]["replicas"] == 5
    assert after["metadata"]["generation"] == 2
    with pytest.raises(ApiError) as smp:
        store.patch(rc, "ns", "r", {"spec": {}}, patch_type="strategic")
    assert smp.value.code == 415


def test_store_finalizers_and_graceful_pod_deletion() -> None:
    store = _store()
    store.create("v1/configmaps", {"metadata": {"name": "f", "finalizers": ["x/y"]}}, "ns")
    deleting = store.delete("v1/configmaps", "ns", "f")
    assert deleting["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError):
        store.patch("v1/configmaps", "ns", "f", {"metadata": {"finalizers": ["x/y", "new"]}})
    store.patch("v1/configmaps", "ns", "f", {"metadata": {"finalizers": None}})
    assert store.get("v1/configmaps", "ns", "f") is None
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "node"},
    }
    store.create("v1/pods", pod, "ns")
    terminating = store.delete("v1/pods", "ns", "p")
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 30
    assert store.get("v1/pods", "ns", "p") is not None  # until the kubelet confirms
    store.delete("v1/pods", "ns", "p", grace_period_seconds=0)
    assert store.get("v1/pods", "ns", "p") is None


def test_store_rejects_what_a_real_api_server_rejects() -> None:
    store = _store()
    with pytest.raises(ApiError):
        store.create("v1/configmaps", {"metadata": {"name": "Bad_Name"}}, "ns")
    with pytest.raises(ApiError):
        store.create("v1/configmaps", {"metadata": {"name": "c", "labels": {"a": "x" * 64}}}, "ns")
    sts: dict[str, Any] = {
        "metadata": {"name": "s"},
        "spec": {
            "selector": {"matchLabels": {"app": "s"}},
            "serviceName": "s",
            "template": {
                "metadata": {"labels": {"app": "s"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    store.create("apps/v1/statefulsets", sts, "ns")
    with pytest.raises(ApiError) as immutable:
        store.patch("apps/v1/statefulsets", "ns", "s", {"spec": {"serviceName": "other"}})
    assert immutable.value.code == 422
    store.patch("apps/v1/statefulsets", "ns", "s", {"spec": {"replicas": 5}})
    bad_sts = {
        **sts,
        "metadata": {"name": "t"},
        "spec": {**sts["spec"], "selector": {"matchLabels": {"x": "y"}}},
    }
    with pytest.raises(ApiError):
        store.create("apps/v1/statefulsets", bad_sts, "ns")


async def test_store_watch_projects_selectors_and_resumes_from_a_version() -> None:
    store = _store()
    sub, first = store.watch("v1/configmaps", namespace="ns", label_selector="app=a")
    assert first == []
    store.create("v1/configmaps", {"metadata": {"name": "c", "labels": {"app": "a"}}}, "ns")
    mark = store.resource_version
    store.patch("v1/configmaps", "ns", "c", {"metadata": {"labels": {"app": "b"}}})
    store.patch("v1/configmaps", "ns", "c", {"metadata": {"labels": {"app": "a"}}})
    seen = [await asyncio.wait_for(sub.get(), 1) for _ in range(3)]
    assert [e.type for e in seen if e] == ["ADDED", "DELETED", "ADDED"]
    _, replay = store.watch("v1/configmaps", namespace="ns", resource_version=mark)
    assert [e.type for e in replay] == ["MODIFIED", "MODIFIED"]
    store.unsubscribe(sub)


def test_store_watch_from_a_compacted_version_is_gone() -> None:
    store = ObjectStore(history_limit=2)
    store.create("v1/namespaces", {"metadata": {"name": "ns"}})
    store.create("v1/configmaps", {"metadata": {"name": "c"}}, "ns")
    mark = store.resource_version
    for i in range(3):
        store.patch("v1/configmaps", "ns", "c", {"data": {"i": str(i)}})
    with pytest.raises(ApiError) as gone:
        store.watch("v1/configmaps", resource_version=mark)
    assert gone.value.code == 410


def test_a_new_pod_incarnation_gets_a_new_address_and_gives_it_back(tmp_path: Path) -> None:
    from tests.k8s.harness.network import ClusterNetwork

    network = ClusterNetwork(tmp_path / "hosts.json", "127.200.0.0/23")
    first = network.new_pod_ip("ns", "kv-0", "uid-1")
    assert network.new_pod_ip("ns", "kv-0", "uid-1") == first  # stable per incarnation
    other = network.new_pod_ip("ns", "kv-1", "uid-2")
    network.set_pod_record("ns", "kv-0", "kv-peers", first)
    network.release_pod_ip("ns", "kv-0", "uid-1")
    network.remove_pod_record("ns", "kv-0", "kv-peers", first)
    assert network.lookup("kv-0.kv-peers.ns.svc") == []
    second = network.new_pod_ip("ns", "kv-0", "uid-3")
    assert second not in (first, other)  # recreated: elsewhere, never on a live pod's address
    network.set_pod_record("ns", "kv-0", "kv-peers", second)
    network.remove_pod_record("ns", "kv-0", "kv-peers", first)  # a late, stale removal
    assert network.lookup("kv-0.kv-peers.ns.svc") == [second]


def test_service_account_rbac_allows_only_what_a_bound_role_names() -> None:
    from tests.k8s.harness import rbac

    store = ObjectStore()
    store.create("v1/namespaces", {"metadata": {"name": "ns"}})
    store.create(
        "rbac.authorization.k8s.io/v1/roles",
        {
            "metadata": {"name": "labels", "namespace": "ns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods"],
                    "resourceNames": ["kv-0"],
                    "verbs": ["patch"],
                }
            ],
        },
        "ns",
    )
    store.create(
        "rbac.authorization.k8s.io/v1/rolebindings",
        {
            "metadata": {"name": "labels", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "labels"},
            "subjects": [{"kind": "ServiceAccount", "name": "kv-node", "namespace": "ns"}],
        },
        "ns",
    )

    def allowed(account: str, verb: str, name: str | None, namespace: str = "ns") -> bool:
        try:
            rbac.authorize(
                store,
                ("ns", account),
                verb=verb,
                group="",
                resource="pods",
                namespace=namespace,
                name=name,
            )
        except ApiError as e:
            assert e.code == 403
            return False
        return True

    assert allowed("kv-node", "patch", "kv-0")
    assert not allowed("kv-node", "patch", "kv-1")  # another pod
    assert not allowed("kv-node", "get", "kv-0")  # another verb
    assert not allowed("kv-node", "list", None)  # resourceNames never allow a list
    assert not allowed("default", "patch", "kv-0")  # another account
    assert not allowed("kv-node", "patch", "kv-0", namespace="other")  # another namespace
