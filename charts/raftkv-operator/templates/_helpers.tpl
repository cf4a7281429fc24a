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

{{/* Peering is on with more than one replica: kopf then lets one replica work at a time. */}}
{{- define "raftkv-operator.peeringEnabled" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.peering.always }}true{{- end }}
{{- end }}

{{/* Cluster-wide unless a list of namespaces is given. */}}
{{- define "raftkv-operator.clusterWide" -}}
{{- if not .Values.watch.namespaces }}true{{- end }}
{{- end }}

{{/* The operator's command line (raftkv_operator/__main__.py): scope, peering (without it
the operator runs standalone), probes, metrics, logging. */}}
{{- define "raftkv-operator.args" -}}
{{- if include "raftkv-operator.clusterWide" . }}
- --all-namespaces
{{- else }}
{{- range .Values.watch.namespaces }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- if include "raftkv-operator.peeringEnabled" . }}
- --peering={{ .Values.peering.name }}
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
