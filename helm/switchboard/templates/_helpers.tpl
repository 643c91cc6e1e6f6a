{{/* Names and labels shared by every template. */}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
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

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The bundled try-out Redis: its name and selector labels. */}}
{{- define "switchboard.redisName" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret the chart creates for values given inline. */}}
{{- define "switchboard.secretName" -}}
{{- include "switchboard.fullname" . }}
{{- end }}

{{/* JWT: the Secret and the key to read. */}}
{{- define "switchboard.jwtSecretName" -}}
{{- default (include "switchboard.secretName" .) .Values.auth.jwt.existingSecret }}
{{- end }}

{{- define "switchboard.jwtSecretKey" -}}
{{- if and .Values.auth.jwt.existingSecret .Values.auth.jwt.existingSecretKey }}
{{- .Values.auth.jwt.existingSecretKey }}
{{- else if eq .Values.auth.jwt.mode "publicKey" }}
{{- "jwt-public-key" }}
{{- else }}
{{- "jwt-secret" }}
{{- end }}
{{- end }}

{{- define "switchboard.apiKeysSecretName" -}}
{{- default (include "switchboard.secretName" .) .Values.apiKeys.existingSecret }}
{{- end }}

{{- define "switchboard.apiKeysSecretKey" -}}
{{- if .Values.apiKeys.existingSecret }}
{{- .Values.apiKeys.existingSecretKey }}
{{- else }}
{{- "api-keys" }}
{{- end }}
{{- end }}

{{/* Does the chart create its own Secret, and with what? */}}
{{- define "switchboard.createJwtSecret" -}}
{{- if and (ne .Values.auth.jwt.mode "none") (not .Values.auth.jwt.existingSecret) }}true{{ end }}
{{- end }}

{{- define "switchboard.createApiKeys" -}}
{{- if and .Values.apiKeys.keys (not .Values.apiKeys.existingSecret) }}true{{ end }}
{{- end }}

{{- define "switchboard.useApiKeys" -}}
{{- if or .Values.apiKeys.keys .Values.apiKeys.existingSecret }}true{{ end }}
{{- end }}

{{/*
Drain arithmetic: the kubelet kills the container terminationGracePeriodSeconds
after it starts the preStop hook, so the period must cover the preStop sleep
and the whole drain, plus time to purge the node's sockets from Redis.
*/}}
{{- define "switchboard.terminationGracePeriodSeconds" -}}
{{- add .Values.drain.preStopSleepSeconds .Values.drain.timeoutSeconds .Values.drain.extraGraceSeconds }}
{{- end }}

{{/*
Refuses combinations that would render a pod that cannot start, with a message
that names the value to change.
*/}}
{{- define "switchboard.validate" -}}
{{- $jwt := .Values.auth.jwt }}
{{- if and (eq $jwt.mode "secret") (not $jwt.existingSecret) (not $jwt.secret) }}
{{- fail "auth.jwt.mode=secret needs auth.jwt.secret or auth.jwt.existingSecret" }}
{{- end }}
{{- if and (eq $jwt.mode "publicKey") (not $jwt.existingSecret) (not $jwt.publicKey) }}
{{- fail "auth.jwt.mode=publicKey needs auth.jwt.publicKey (PEM) or auth.jwt.existingSecret" }}
{{- end }}
{{- if and (not .Values.bundledRedis.enabled) (not .Values.redis.existingSecret) (not .Values.redis.url) }}
{{- fail "no Redis: set redis.url, redis.existingSecret or bundledRedis.enabled=true (the image has no redis-server of its own)" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- end }}
