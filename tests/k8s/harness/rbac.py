"""RBAC for service accounts: a pod's token gets exactly what its namespace's Roles bound
to its account allow (apiGroups, resources, resourceNames, verbs), as the API server's RBAC
authorizer decides. ClusterRoles are not emulated: a service account's RoleBinding to one
grants nothing here. Other callers (the test process, the operator) are not checked.
"""

from __future__ import annotations

from typing import Any

from tests.k8s.harness.store import ApiError, ObjectStore

Obj = dict[str, Any]


def request_verb(method: str, name: str | None, params: dict[str, str]) -> str:
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name is not None else "list"
    if method == "DELETE":
        return "delete" if name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _matches(rule: Obj, group: str, resource: str, verb: str, name: str | None) -> bool:
    def has(key: str, value: str) -> bool:
        values = rule.get(key) or []
        return "*" in values or value in values

    if not (has("apiGroups", group) and has("resources", resource) and has("verbs", verb)):
        return False
    names = rule.get("resourceNames") or []
    return not names or (name is not None and name in names)


def authorize(
    store: ObjectStore,
    subject: tuple[str, str],
    *,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
    name: str | None,
) -> None:
    """Raise 403 unless a Role in `namespace` bound to the account allows the request."""
    account_namespace, account = subject
    user = f"system:serviceaccount:{account_namespace}:{account}"
    allowed = False
    if namespace is not None and account:
        roles = {
            r["metadata"]["name"]: r
            for r in store.list("rbac.authorization.k8s.io/v1/roles", namespace)
        }
        for binding in store.list("rbac.authorization.k8s.io/v1/rolebindings", namespace):
            ref = binding.get("roleRef") or {}
            bound = any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == account
                and s.get("namespace", namespace) == account_namespace
                for s in binding.get("subjects") or []
            )
            role = roles.get(ref.get("name", "")) if ref.get("kind") == "Role" else None
            if (
                bound
                and role is not None
                and any(
                    _matches(rule, group, resource, verb, name) for rule in role.get("rules") or []
                )
            ):
                allowed = True
                break
    if not allowed:
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        target = f'{resource} "{name}"' if name else resource
        raise ApiError(
            403,
            "Forbidden",
            f'{target} is forbidden: User "{user}" cannot {verb} resource '
            f'"{resource}" in API group "{group}"{where}',
        )
