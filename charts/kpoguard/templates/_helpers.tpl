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

{{/* The Secret kpoguard keeps in self-managed mode: never cert-manager's. */}}
{{- define "kpoguard.selfManagedSecret" -}}
{{- .Values.tls.selfManagedSecretName | default (printf "%s-self-managed-tls" (include "kpoguard.fullname" .)) -}}
{{- end -}}

{{/* The seconds in a duration the schema allows (e.g. 2160h, 1h30m, 90s). */}}
{{- define "kpoguard.seconds" -}}
{{- $seconds := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?[hms]" (toString .) -1 -}}
{{- $unit := regexFind "[hms]$" . -}}
{{- $seconds = addf $seconds (mulf (float64 (trimSuffix $unit .)) (get (dict "h" 3600 "m" 60 "s" 1) $unit)) -}}
{{- end -}}
{{- $seconds -}}
{{- end -}}

{{/*
caDuration at least twice duration, in both certificate modes: kpoguard
refuses less for its own CA at start-up, and cert-manager would issue
serving certificates cut short to the CA's expiry.
*/}}
{{- define "kpoguard.checkCertificateLifetimes" -}}
{{- $ca := include "kpoguard.seconds" .Values.certManager.caDuration | float64 -}}
{{- $serving := include "kpoguard.seconds" .Values.certManager.duration | float64 -}}
{{- if lt $ca (mulf 2 $serving) -}}
{{- fail (printf "certManager.caDuration (%s) must be at least twice certManager.duration (%s): a CA that barely outlives its serving certificates cuts them short and leaves no time to trust a renewed CA before it signs" .Values.certManager.caDuration .Values.certManager.duration) -}}
{{- end -}}
{{- end -}}

{{/* Lets cert-manager's CA injector fill the webhooks' caBundle. */}}
{{- define "kpoguard.webhookAnnotations" -}}
{{- if .Values.certManager.enabled -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "kpoguard.fullname" . }}-serving
{{- end -}}
{{- end -}}

{{/*
workers.selector, a label selector as kubectl takes it (k=v, k==v, k!=v,
k in (a,b), k notin (a,b), k, !k; terms joined by commas), as the
objectSelector of the worker guard: the API server then sends it only
updates of workers.
*/}}
{{- define "kpoguard.workerObjectSelector" -}}
matchExpressions:
{{- range regexFindAll "[^,(]+(\\([^)]*\\))?" .Values.workers.selector -1 }}
{{- $term := trim . }}
{{- if hasPrefix "!" $term }}
  - {key: {{ trimPrefix "!" $term | trim | quote }}, operator: DoesNotExist}
{{- else if regexMatch "^\\S+\\s+(in|notin)\\s*\\(" $term }}
  - key: {{ regexReplaceAll "\\s.*" $term "" | quote }}
    operator: {{ ternary "In" "NotIn" (regexMatch "^\\S+\\s+in\\s*\\(" $term) }}
    values: [{{ range $i, $v := regexReplaceAll "^[^(]*\\((.*)\\)$" $term "${1}" | splitList "," }}{{ if $i }}, {{ end }}{{ trim $v | quote }}{{ end }}]
{{- else if contains "!=" $term }}
  {{- $kv := regexSplit "!=" $term 2 }}
  - {key: {{ first $kv | trim | quote }}, operator: NotIn, values: [{{ last $kv | trim | quote }}]}
{{- else if contains "=" $term }}
  {{- $kv := regexSplit "==?" $term 2 }}
  - {key: {{ first $kv | trim | quote }}, operator: In, values: [{{ last $kv | trim | quote }}]}
{{- else }}
  - {key: {{ $term | quote }}, operator: Exists}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The worker guard's break glass: the API server skips requests of
workers.guard.exemptUsers and exemptGroups without calling kpoguard, so
they hold while kpoguard is down. A request may lack either field.
*/}}
{{- define "kpoguard.guardExemptions" -}}
- name: not-exempt
  expression: >-
    !(has(request.userInfo.username) && request.userInfo.username in {{ toJson .Values.workers.guard.exemptUsers }}) &&
    !(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in {{ toJson .Values.workers.guard.exemptGroups }}))
{{- end -}}

{{/*
The audit's Lease, and its label selector of task pods: the webhook's
objectSelector's matchLabels (the policy's taskPodSelector narrows it).
*/}}
{{- define "kpoguard.auditLease" -}}
{{- printf "%s-audit" (include "kpoguard.fullname" .) -}}
{{- end -}}

{{- define "kpoguard.auditPodSelector" -}}
{{- if not .Values.webhook.objectSelector.matchLabels -}}
{{- fail "audit.enabled needs webhook.objectSelector.matchLabels: without them the audit would watch every pod of the cluster" -}}
{{- end -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.webhook.objectSelector.matchLabels -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
