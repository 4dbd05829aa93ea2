{{- define "slipway.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "slipway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "slipway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "slipway.selectorLabels" . }}
{{- end -}}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "slipway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The controller's rules as generated from the code (files/rbac/role.yaml), split by where
they apply: leases in the release namespace, everything else in the build namespace. Leader
election also records Events (core API) next to its Lease. */}}
{{- define "slipway.rules" -}}
{{- $role := .root.Files.Get "files/rbac/role.yaml" | fromYaml -}}
{{- range $role.rules }}
{{- $lease := has "coordination.k8s.io" .apiGroups }}
{{- if eq $lease (eq $.scope "release") }}
- {{ toYaml . | indent 2 | trim }}
{{- end }}
{{- end }}
{{- if eq .scope "release" }}
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}
{{- end -}}

{{/* Where people and forges reach Slipway: externalURL, else https://<ingress.host> when the
Ingress is enabled, else empty (statuses carry no link). No trailing slash, since build links
are <url>/builds/<namespace>/<name>. */}}
{{- define "slipway.externalURL" -}}
{{- if .Values.externalURL -}}
{{- trimSuffix "/" .Values.externalURL -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "https://%s" .Values.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* Whether Slipway can report to GitHub: the App's ID (and so its private key) is set. */}}
{{- define "slipway.githubApp" -}}
{{- if and .Values.github.enabled (gt (int64 .Values.github.app.id) 0) }}true{{ end -}}
{{- end -}}

{{/* Whether Slipway can report to GitLab: an API token Secret is named. */}}
{{- define "slipway.gitlabToken" -}}
{{- if and .Values.gitlab.enabled .Values.gitlab.apiToken.name }}true{{ end -}}
{{- end -}}
