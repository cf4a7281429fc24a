{{/* RBAC rule lists, shared by the ClusterRole and the per-namespace Roles (rbac.yaml). */}}

{{- define "raftkv-operator.namespacedRules" }}
# RaftClusters: kopf watches them and patches progress/finalizers; handlers write status.
- apiGroups: [raftkv.dev]
  resources: [raftclusters]
  verbs: [get, list, watch, patch]
# RaftCheckpoints: created by the schedule, deleted by retention.
- apiGroups: [raftkv.dev]
  resources: [raftcheckpoints]
  verbs: [get, list, watch, patch, create, delete]
- apiGroups: [raftkv.dev]
  resources: [raftclusters/status, raftcheckpoints/status]
  verbs: [patch]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: [raftkv.dev]
  resources: [raftclusters/finalizers, raftcheckpoints/finalizers]
  verbs: [update]
# Objects a RaftCluster owns (StatefulSets are also watched).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# A cluster's credentials: CA, certificates, tokens, auth file (replaced whole on renewal).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update]
# The cluster's NetworkPolicy.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, update]
# cert-manager Certificates (clusters with spec.tls.mode certManager).
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [get, create, patch]
# Each cluster's members: a ServiceAccount and a Role that may patch only their own pods'
# role labels (the operator can grant only what it holds: patch on pods, below).
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch]
# Member pods: watched, role labels (leader routing), ordered rolling restarts.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch, delete]
# The checkpoint archive claim; a removed member's volume (reclaimPolicy: Delete).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, create, delete]
# Checkpoint archive Jobs.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get]
# Events for member, leader, checkpoint and upgrade steps (kopf only creates core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
{{- define "raftkv-operator.clusterRules" }}
# kopf: discover CRDs and namespaces to watch.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- define "raftkv-operator.leaderElectionRules" }}
# Leader election: one active operator replica at a time (its own Lease only).
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
