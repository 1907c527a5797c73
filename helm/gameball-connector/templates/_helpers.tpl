{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "gameball-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. If the release name already contains the chart name it is
used as is.
*/}}
{{- define "gameball-connector.fullname" -}}
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

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "gameball-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "gameball-connector.labels" -}}
helm.sh/chart: {{ include "gameball-connector.chart" . }}
{{ include "gameball-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gameball-connector
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "gameball-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gameball-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the service account to use.
*/}}
{{- define "gameball-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gameball-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository, then @digest or :tag (tag defaults to appVersion).
*/}}
{{- define "gameball-connector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding config.yaml.
*/}}
{{- define "gameball-connector.configMapName" -}}
{{- .Values.existingConfigMap | default (include "gameball-connector.fullname" .) }}
{{- end }}

{{/*
Name of the Secret the chart creates for credentials given as values.
*/}}
{{- define "gameball-connector.secretName" -}}
{{- include "gameball-connector.fullname" . }}
{{- end }}

{{/*
Metrics port: the one the connector listens on (config.metrics.port, default 9464).
*/}}
{{- define "gameball-connector.metricsPort" -}}
{{- $metrics := .Values.config.metrics | default dict }}
{{- $metrics.port | default 9464 | int }}
{{- end }}

{{/*
Kafka credential variables: env name -> [key in existingSecret, value key, key in the
chart's Secret]. One table used by the Deployment, the Secret and the KEDA auth.
*/}}
{{- define "gameball-connector.kafkaCredentials" -}}
KAFKA_SASL_USERNAME: {values: saslUsername, chartKey: kafka-sasl-username, keda: username}
KAFKA_SASL_PASSWORD: {values: saslPassword, chartKey: kafka-sasl-password, keda: password}
KAFKA_SSL_CA_PEM: {values: sslCaPem, chartKey: kafka-ssl-ca-pem, keda: ca}
KAFKA_SSL_CERTIFICATE_PEM: {values: sslCertificatePem, chartKey: kafka-ssl-certificate-pem, keda: cert}
KAFKA_SSL_KEY_PEM: {values: sslKeyPem, chartKey: kafka-ssl-key-pem, keda: key}
KAFKA_SSL_KEY_PASSWORD: {values: sslKeyPassword, chartKey: kafka-ssl-key-password, keda: keyPassword}
{{- end }}

{{/*
Where each credential variable comes from, as YAML: env name -> {secret, key, keda}.
A variable appears only when it has a source: without one, the connector stops at start
with "environment variable X is not set" instead of running with an empty key.
*/}}
{{- define "gameball-connector.credentialRefs" -}}
{{- $chartSecret := include "gameball-connector.secretName" . }}
{{- $refs := dict }}
{{- $gb := .Values.gameball }}
{{- if $gb.existingSecret }}
{{- if $gb.existingSecretKeys.apiKey }}
{{- $_ := set $refs "GAMEBALL_API_KEY" (dict "secret" $gb.existingSecret "key" $gb.existingSecretKeys.apiKey) }}
{{- end }}
{{- if $gb.existingSecretKeys.secretKey }}
{{- $_ := set $refs "GAMEBALL_SECRET_KEY" (dict "secret" $gb.existingSecret "key" $gb.existingSecretKeys.secretKey) }}
{{- end }}
{{- else }}
{{- if $gb.apiKey }}
{{- $_ := set $refs "GAMEBALL_API_KEY" (dict "secret" $chartSecret "key" "gameball-api-key") }}
{{- end }}
{{- if $gb.secretKey }}
{{- $_ := set $refs "GAMEBALL_SECRET_KEY" (dict "secret" $chartSecret "key" "gameball-secret-key") }}
{{- end }}
{{- end }}
{{- $kafka := .Values.kafka }}
{{- range $env, $spec := include "gameball-connector.kafkaCredentials" . | fromYaml }}
{{- if $kafka.existingSecret }}
{{- $key := get $kafka.existingSecretKeys $spec.values }}
{{- if $key }}
{{- $_ := set $refs $env (dict "secret" $kafka.existingSecret "key" $key "keda" $spec.keda) }}
{{- end }}
{{- else if get $kafka $spec.values }}
{{- $_ := set $refs $env (dict "secret" $chartSecret "key" $spec.chartKey "keda" $spec.keda) }}
{{- end }}
{{- end }}
{{- toYaml $refs }}
{{- end }}

{{/*
Does the chart create its own Secret? Yes unless every credential comes from existing
Secrets ("true" or "").
*/}}
{{- define "gameball-connector.createSecret" -}}
{{- $chartSecret := include "gameball-connector.secretName" . }}
{{- range $env, $ref := include "gameball-connector.credentialRefs" . | fromYaml }}
{{- if eq $ref.secret $chartSecret }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Checks that fail the render with a message saying what to change.
*/}}
{{- define "gameball-connector.validateValues" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both true: KEDA creates its own HorizontalPodAutoscaler, so enable only one of them" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled (or use podMonitor.enabled instead)" }}
{{- end }}
{{- $shutdown := .Values.config.shutdown | default dict }}
{{- $drain := $shutdown.drain_seconds | default 20 }}
{{- $close := $shutdown.close_seconds | default 10 }}
{{- /* the connector's shutdown bound: drain + close + 2 s (connector/shutdown.py SLACK_S) */}}
{{- if and (not (kindIs "string" $drain)) (not (kindIs "string" $close)) (lt (int .Values.terminationGracePeriodSeconds) (int (ceil (addf $drain $close 2)))) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least config.shutdown.drain_seconds + close_seconds + 2 (%v + %v + 2), the connector's shutdown bound: Kubernetes would kill the connector while it drains" .Values.terminationGracePeriodSeconds $drain $close) }}
{{- end }}
{{- end }}
