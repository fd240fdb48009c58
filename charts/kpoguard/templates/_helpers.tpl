{{/* Name of every object of the release. */}}
{{- define "kpoguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "kpoguard" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kpoguard" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kpoguard.labels" -}}
app.kubernetes.io/name: kpoguard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kpoguard.selectorLabels" -}}
app.kubernetes.io/name: kpoguard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kpoguard.policyConfigMap" -}}
{{- printf "%s-policy" (include "kpoguard.fullname" .) -}}
{{- end -}}

{{/*
Namespaces that never reach the pod webhooks: kube-system and kpoguard's
own namespace always (a webhook must never block its own recovery), then
whatever the values add.
*/}}
{{- define "kpoguard.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq) | nindent 6 }}
  {{- with .Values.webhook.namespaceOptInLabel }}
  - key: {{ . }}
    operator: In
    values: ["true"]
  {{- end }}
{{- end -}}

{{- define "kpoguard.clientConfig" -}}
service:
  name: {{ include "kpoguard.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  port: {{ .root.Values.service.port }}
  path: {{ .path }}
{{- end -}}

{{- define "kpoguard.tlsSecret" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "kpoguard.fullname" .)) -}}
{{- end -}}

{{/* Lets cert-manager's CA injector fill the webhooks' caBundle. */}}
{{- define "kpoguard.webhookAnnotations" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "kpoguard.fullname" . }}-serving
{{- end -}}
{{- end -}}
