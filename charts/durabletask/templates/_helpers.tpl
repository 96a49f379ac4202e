{{/* The chart name, or nameOverride. */}}
{{- define "durabletask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object-name prefix: fullnameOverride, RELEASE if it contains the chart name, else RELEASE-CHART. */}}
{{- define "durabletask.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "durabletask.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "durabletask.server.fullname" -}}
{{- printf "%s-server" (include "durabletask.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "durabletask.operator.fullname" -}}
{{- printf "%s-operator" (include "durabletask.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select one component's pods: (dict "ctx" $ "component" "server"). */}}
{{- define "durabletask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "durabletask.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of one component's objects: (dict "ctx" $ "component" "server"). */}}
{{- define "durabletask.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "durabletask.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/* repository:tag of the control-plane image; the tag defaults to the chart's appVersion. */}}
{{- define "durabletask.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* host:port of the server's gRPC Service, as workers and clients in the cluster reach it. */}}
{{- define "durabletask.server.address" -}}
{{- printf "%s.%s.svc:%d" (include "durabletask.server.fullname" .) .Release.Namespace (int .Values.server.port) }}
{{- end }}

{{/* The namespaces the operator manages (without allNamespaces): watchNamespaces, else the release's. */}}
{{- define "durabletask.operator.namespaces" -}}
{{- toJson (default (list .Release.Namespace) .Values.operator.watchNamespaces) }}
{{- end }}

{{/* PromQL label matchers for this release's server, as the ServiceMonitor's targets carry them (job is the Service's name). */}}
{{- define "durabletask.hubSelector" -}}
namespace="{{ .Release.Namespace }}", job="{{ include "durabletask.server.fullname" . }}"
{{- end }}

{{/* The pod-level settings shared by the server and the operator: (dict "ctx" $ "values" .Values.server). */}}
{{- define "durabletask.podPlacement" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express; each fails the render with what to change. */}}
{{/* The Secret with the CA that https /metrics is checked against; empty while the server serves plain text. */}}
{{- define "durabletask.metricsCA.secretName" -}}
{{- if .Values.server.tls.secretName }}
{{- .Values.operator.metricsCA.secretName | default .Values.server.tls.secretName }}
{{- end }}
{{- end }}

{{- define "durabletask.checks" -}}
{{- if and (eq .Values.store.type "sqlite") (gt (int .Values.server.replicas) 1) }}
{{- fail "server.replicas > 1 needs store.type=postgresql: SQLite has a single writer." }}
{{- end }}
{{- if and (eq .Values.store.type "postgresql") (not .Values.store.postgresql.existingSecret) }}
{{- fail "store.type=postgresql needs store.postgresql.existingSecret: the name of a Secret holding the connection URL." }}
{{- end }}
{{- if and .Values.operator.enabled (not .Values.operator.prometheusUrl) (not .Values.server.metrics.enabled) }}
{{- fail "the operator reads instance counts from the server's /metrics: set server.metrics.enabled=true or operator.prometheusUrl." }}
{{- end }}
{{- if and .Values.monitoring.serviceMonitor.enabled (not .Values.server.metrics.enabled) }}
{{- fail "monitoring.serviceMonitor needs server.metrics.enabled=true." }}
{{- end }}
{{- end }}
