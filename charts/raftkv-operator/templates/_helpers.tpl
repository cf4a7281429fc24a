{{/* Names and labels shared by every template. */}}

{{- define "raftkv-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raftkv-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "raftkv-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raftkv-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raftkv-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "raftkv-operator.labels" -}}
helm.sh/chart: {{ include "raftkv-operator.chart" . }}
{{ include "raftkv-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "raftkv-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "raftkv-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "raftkv-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Leader election is on with more than one replica: one replica acts at a time. */}}
{{- define "raftkv-operator.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.always }}true{{- end }}
{{- end }}

{{- define "raftkv-operator.leaseName" -}}
{{- default (include "raftkv-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Only the release namespace, with a Role and no cluster-scoped permission. */}}
{{- define "raftkv-operator.releaseNamespaceOnly" -}}
{{- if .Values.watch.releaseNamespaceOnly }}true{{- end }}
{{- end }}

{{/* Cluster-wide unless a list of namespaces (or the release namespace only) is given. */}}
{{- define "raftkv-operator.clusterWide" -}}
{{- if not (or .Values.watch.namespaces .Values.watch.releaseNamespaceOnly) }}true{{- end }}
{{- end }}

{{/* A monitoring.coreos.com/v1 kind is rendered where the cluster serves it (or the check
is off). Call with (list $ "ServiceMonitor"). */}}
{{- define "raftkv-operator.monitoringApi" -}}
{{- $root := index . 0 }}
{{- if or (not $root.Values.monitoringApiCheck) ($root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" (index . 1))) }}true{{- end }}
{{- end }}

{{/* The operator's command line (raftkv_operator/__main__.py): scope, leader election
(without it the operator runs alone), probes, metrics, logging. */}}
{{- define "raftkv-operator.args" -}}
{{- if include "raftkv-operator.releaseNamespaceOnly" . }}
- --namespace={{ .Release.Namespace }}
- --no-cluster-scan
{{- else if include "raftkv-operator.clusterWide" . }}
- --all-namespaces
{{- else }}
{{- range .Values.watch.namespaces }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- if include "raftkv-operator.leaderElection" . }}
- --leader-election-lease={{ include "raftkv-operator.leaseName" . }}
- --leader-election-namespace={{ .Release.Namespace }}
- --lease-duration={{ .Values.leaderElection.leaseDuration }}
- --renew-deadline={{ .Values.leaderElection.renewDeadline }}
- --retry-period={{ .Values.leaderElection.retryPeriod }}
{{- end }}
- --liveness=http://0.0.0.0:{{ .Values.probes.port }}/healthz
- --metrics-port={{ .Values.metrics.port }}
- --log-format={{ .Values.log.format }}
{{- if eq .Values.log.level "verbose" }}
- --verbose
{{- else if eq .Values.log.level "debug" }}
- --debug
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
