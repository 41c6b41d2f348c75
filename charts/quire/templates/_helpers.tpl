{{/*
Names. Component helpers take a list: (list $ "api-server").
*/}}

{{- define "quire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just <release> when it already contains the chart name. */}}
{{- define "quire.fullname" -}}
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

{{/* <fullname>-<component>, e.g. quire-api-server. */}}
{{- define "quire.componentName" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "quire.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "quire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels.
*/}}

{{/* Labels of every object; (list $ "component") adds app.kubernetes.io/component. */}}
{{- define "quire.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "quire.chart" $ctx }}
{{ include "quire.selectorLabels" . }}
app.kubernetes.io/version: {{ include "quire.imageTag" $ctx | replace "+" "_" | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: quire
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels a component's selectors match on: (list $ "component"); "" for none. */}}
{{- define "quire.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "quire.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- with index . 1 }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
Image.
*/}}

{{- define "quire.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "quire.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "quire.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Service accounts: (list $ "api-server" .Values.apiServer.serviceAccount).
*/}}
{{- define "quire.serviceAccountName" -}}
{{- $ctx := index . 0 }}
{{- $sa := index . 2 }}
{{- if $sa.create }}
{{- default (include "quire.componentName" (list $ctx (index . 1))) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
Secrets: the chart's own, or the existing ones named in the values.
*/}}

{{- define "quire.database.secretName" -}}
{{- .Values.database.existingSecret | default (include "quire.componentName" (list . "database")) }}
{{- end }}

{{- define "quire.database.secretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
{{- end }}

{{- define "quire.jwt.secretName" -}}
{{- .Values.jwt.existingSecret | default (include "quire.componentName" (list . "jwt")) }}
{{- end }}

{{- define "quire.jwt.secretKey" -}}
{{- if .Values.jwt.existingSecret }}{{ .Values.jwt.existingSecretKey }}{{ else }}QUIRE_JWT_SECRET{{ end }}
{{- end }}

{{/* True (non-empty) when pods get static AWS credentials from a Secret. */}}
{{- define "quire.aws.hasCredentials" -}}
{{- $c := .Values.aws.credentials }}
{{- if or $c.existingSecret $c.accessKeyId }}true{{ end }}
{{- end }}

{{- define "quire.aws.secretName" -}}
{{- .Values.aws.credentials.existingSecret | default (include "quire.componentName" (list . "aws")) }}
{{- end }}

{{- define "quire.aws.accessKeyIdKey" -}}
{{- if .Values.aws.credentials.existingSecret }}{{ .Values.aws.credentials.existingSecretKeys.accessKeyId }}{{ else }}AWS_ACCESS_KEY_ID{{ end }}
{{- end }}

{{- define "quire.aws.secretAccessKeyKey" -}}
{{- if .Values.aws.credentials.existingSecret }}{{ .Values.aws.credentials.existingSecretKeys.secretAccessKey }}{{ else }}AWS_SECRET_ACCESS_KEY{{ end }}
{{- end }}

{{/* True (non-empty) when the queue or the storage is on AWS. */}}
{{- define "quire.aws.used" -}}
{{- if or (eq .Values.queue.type "sqs") (eq .Values.storage.type "s3") }}true{{ end }}
{{- end }}

{{/* Pod annotation that rolls the pods when a chart-managed Secret changes. */}}
{{- define "quire.secretChecksum" -}}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end }}

{{/*
Environment shared by api-server, worker and controller: database, queue, storage, AWS, logs.
*/}}
{{- define "quire.env.common" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "quire.database.secretName" . }}
      key: {{ include "quire.database.secretKey" . }}
{{- with .Values.database.maxConnections }}
- name: QUIRE_DB_MAX_CONNECTIONS
  value: {{ . | quote }}
{{- end }}
- name: QUIRE_DB_ACQUIRE_TIMEOUT
  value: {{ .Values.database.acquireTimeout | quote }}
- name: QUIRE_MAX_ATTEMPTS
  value: {{ .Values.worker.maxAttempts | quote }}
- name: QUIRE_MAX_REPORT_AGE
  value: {{ .Values.reliability.maxReportAge | quote }}
- name: QUIRE_QUEUE
  value: {{ .Values.queue.type | quote }}
{{- if eq .Values.queue.type "sqs" }}
- name: QUIRE_SQS_QUEUE_URL
  value: {{ .Values.queue.sqs.queueUrl | quote }}
{{- with .Values.queue.sqs.deadLetterQueueUrl }}
- name: QUIRE_SQS_DEAD_LETTER_QUEUE_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
- name: QUIRE_STORAGE
  value: {{ .Values.storage.type | quote }}
{{- if eq .Values.storage.type "s3" }}
- name: QUIRE_S3_BUCKET
  value: {{ .Values.storage.s3.bucket | quote }}
{{- with .Values.storage.s3.prefix }}
- name: QUIRE_S3_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: QUIRE_S3_FORCE_PATH_STYLE
  value: {{ .Values.storage.s3.forcePathStyle | quote }}
{{- else }}
- name: QUIRE_DATA_DIR
  value: {{ .Values.storage.local.dataDir | quote }}
{{- end }}
{{- if include "quire.aws.used" . }}
- name: QUIRE_AWS_CONNECT_TIMEOUT
  value: {{ .Values.reliability.awsConnectTimeout | quote }}
- name: QUIRE_AWS_READ_TIMEOUT
  value: {{ .Values.reliability.awsReadTimeout | quote }}
- name: QUIRE_AWS_OPERATION_TIMEOUT
  value: {{ .Values.reliability.awsOperationTimeout | quote }}
{{- with .Values.aws.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.aws.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "quire.aws.hasCredentials" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "quire.aws.secretName" . }}
      key: {{ include "quire.aws.accessKeyIdKey" . }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "quire.aws.secretName" . }}
      key: {{ include "quire.aws.secretAccessKeyKey" . }}
{{- end }}
{{- end }}
- name: RUST_LOG
  value: {{ .Values.logging.level | quote }}
- name: QUIRE_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
{{- end }}

{{/*
The rescuer's settings, for the components that dispatch (api-server, controller).
*/}}
{{- define "quire.env.rescue" -}}
- name: QUIRE_RESCUE_AFTER
  value: {{ .Values.reliability.rescueAfter | quote }}
- name: QUIRE_RESCUE_INTERVAL
  value: {{ .Values.reliability.rescueInterval | quote }}
{{- end }}

{{/*
Volumes every component mounts: /tmp, and the shared data volume with local storage.
*/}}
{{- define "quire.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if eq .Values.storage.type "local" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim }}
{{- end }}
{{- end }}

{{- define "quire.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.storage.type "local" }}
- name: data
  mountPath: {{ .Values.storage.local.dataDir }}
{{- end }}
{{- end }}

{{/*
Scheduling fields of a component's pod spec: (list $ .Values.<component> "component").
topologySpreadConstraints without a labelSelector get the component's selector labels.
*/}}
{{- define "quire.scheduling" -}}
{{- $ctx := index . 0 }}
{{- $values := index . 1 }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
{{- $constraints := list }}
{{- range . }}
{{- $constraint := deepCopy . }}
{{- if not $constraint.labelSelector }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "quire.selectorLabels" (list $ctx (index $ 2)) | fromYaml)) }}
{{- end }}
{{- $constraints = append $constraints $constraint }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
{{- end }}
{{- end }}

{{/* The PodDisruptionBudget spec's budget: minAvailable or maxUnavailable. */}}
{{- define "quire.pdbBudget" -}}
{{- if not (kindIs "invalid" .minAvailable) }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end }}

{{/* QUIRE_PUBLIC_URL: apiServer.publicUrl, else the first ingress host. */}}
{{- define "quire.apiServer.publicUrl" -}}
{{- if .Values.apiServer.publicUrl }}
{{- .Values.apiServer.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}
{{- if has $host .hosts }}{{ $tls = true }}{{ end }}
{{- end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- end }}
{{- end }}

{{/* The worker's pod termination grace: more than QUIRE_SHUTDOWN_GRACE. */}}
{{- define "quire.worker.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.worker.terminationGracePeriodSeconds }}
{{- add (int .Values.worker.shutdownGrace) 15 }}
{{- else }}
{{- .Values.worker.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{- define "quire.controller.leaseName" -}}
{{- .Values.controller.leaderElection.leaseName | default (include "quire.componentName" (list . "controller")) }}
{{- end }}

{{/*
QUIRE_TRUSTED_PROXIES of the api-server: the listed proxies, else the private ranges the
ingress controller's pods live in when the ingress is enabled, else none.
*/}}
{{- define "quire.apiServer.trustedProxies" -}}
{{- if .Values.ingress.trustedProxies -}}
{{- join "," .Values.ingress.trustedProxies -}}
{{- else if .Values.ingress.enabled -}}
10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7
{{- end -}}
{{- end -}}

{{/*
A duration value as an env value: strings (30s, 7d) as written, numbers as whole seconds
(never 1e+06, which YAML numbers would print as).
*/}}
{{- define "quire.durationValue" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ int64 . | toString | quote }}{{ end }}
{{- end }}

{{/*
Tracing of a component, (list $ "api-server"): the OTLP endpoint and the service name its
spans carry, when tracing.otlpEndpoint is set; nothing otherwise.
*/}}
{{- define "quire.env.tracing" -}}
{{- $ctx := index . 0 }}
{{- with $ctx.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "quire-%s" (index $ 1) | quote }}
{{- end }}
{{- end }}

{{/*
The operator's data sources (worker.dataSources inline, kept in the ConfigMap
<fullname>-worker-data-sources, or the existing Secret worker.dataSourcesSecret), read by the
worker (to fetch them) and the api-server (GET /data-sources, and to refuse dataset reports
naming an unknown source). Both mount the same object at /etc/quire/data-sources.toml.
"quire.dataSources.enabled" is "true" or empty.
*/}}
{{- define "quire.dataSources.enabled" -}}
{{- if or .Values.worker.dataSources .Values.worker.dataSourcesSecret }}true{{ end }}
{{- end }}

{{/* Pod annotation that rolls the pods when the inline data sources change. */}}
{{- define "quire.dataSources.checksum" -}}
checksum/data-sources: {{ include (print .Template.BasePath "/worker-configmap.yaml") . | sha256sum }}
{{- end }}

{{- define "quire.dataSources.env" -}}
{{- if include "quire.dataSources.enabled" . -}}
- name: QUIRE_DATA_SOURCES_FILE
  value: /etc/quire/data-sources.toml
{{- end }}
{{- end }}

{{- define "quire.dataSources.volumeMount" -}}
{{- if include "quire.dataSources.enabled" . -}}
- name: data-sources
  mountPath: /etc/quire
  readOnly: true
{{- end }}
{{- end }}

{{- define "quire.dataSources.volume" -}}
{{- if .Values.worker.dataSourcesSecret -}}
- name: data-sources
  secret:
    secretName: {{ .Values.worker.dataSourcesSecret }}
    items:
      - key: data-sources.toml
        path: data-sources.toml
{{- else if .Values.worker.dataSources -}}
- name: data-sources
  configMap:
    name: {{ include "quire.componentName" (list . "worker-data-sources") }}
    items:
      - key: data-sources.toml
        path: data-sources.toml
{{- end }}
{{- end }}
