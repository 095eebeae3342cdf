{{- define "vigil.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vigil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The secret of the webhook's serving certificate, if any. */}}
{{- define "vigil.webhookSecret" -}}
{{- if .Values.webhook.certManager.enabled -}}
{{ include "vigil.fullname" . }}-webhook-tls
{{- else -}}
{{ .Values.webhook.tlsSecret }}
{{- end -}}
{{- end -}}

{{/* Checks of the values that the schema cannot express. */}}
{{- define "vigil.validate" -}}
{{- $kind := .Values.queue.kind -}}
{{- if not (has $kind (list "embedded" "nats" "kafka")) -}}
{{- fail (printf "queue.kind %q: want embedded, nats or kafka" $kind) -}}
{{- end -}}
{{- if and (eq $kind "embedded") (ne (int .Values.replicaCount) 1) -}}
{{- fail "queue.kind embedded keeps the queue in one replica's volume: replicaCount must be 1 (use nats or kafka to scale out)" -}}
{{- end -}}
{{- if and (eq $kind "nats") (not .Values.queue.nats.url) -}}
{{- fail "queue.kind nats: set queue.nats.url" -}}
{{- end -}}
{{- if and (eq $kind "kafka") (not .Values.queue.kafka.brokers) -}}
{{- fail "queue.kind kafka: set queue.kafka.brokers" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "vigil.webhookSecret" .)) -}}
{{- fail "several replicas share one serving certificate: set webhook.tlsSecret or webhook.certManager.enabled" -}}
{{- end -}}
{{- if and .Values.webhook.certManager.enabled (not .Values.webhook.certManager.issuerRef.name) -}}
{{- fail "webhook.certManager.enabled: set webhook.certManager.issuerRef.name" -}}
{{- end -}}
{{- if and (not .Values.persistence.enabled) (ne $kind "nats") -}}
{{- fail (printf "queue.kind %s keeps data in the data directory: persistence.enabled must be true" $kind) -}}
{{- end -}}
{{- end -}}

{{/* The hardened container security context of every container. */}}
{{- define "vigil.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
