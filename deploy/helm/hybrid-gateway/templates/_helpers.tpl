{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "hybrid-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart name. */}}
{{- define "hybrid-gateway.fullname" -}}
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

{{- define "hybrid-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object. */}}
{{- define "hybrid-gateway.labels" -}}
helm.sh/chart: {{ include "hybrid-gateway.chart" . }}
app.kubernetes.io/name: {{ include "hybrid-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hybrid-gateway
{{- end }}

{{/* Selector labels; callers add app.kubernetes.io/component. */}}
{{- define "hybrid-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hybrid-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hybrid-gateway.secretName" -}}
{{- default (printf "%s-keys" (include "hybrid-gateway.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "hybrid-gateway.gatewayImage" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (default .Chart.AppVersion .Values.gateway.image.tag) }}
{{- end }}

{{- define "hybrid-gateway.localBackendImage" -}}
{{- printf "%s:%s" .Values.localBackend.image.repository (default .Chart.AppVersion .Values.localBackend.image.tag) }}
{{- end }}

{{/* The policy text: values.policy if set, else files/policy.yaml; either rendered with tpl. */}}
{{- define "hybrid-gateway.policy" -}}
{{- tpl (default (.Files.Get "files/policy.yaml") .Values.policy) . }}
{{- end }}

{{/* Restricted pod security for both containers. */}}
{{- define "hybrid-gateway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
