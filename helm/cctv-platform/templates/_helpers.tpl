{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "cctv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name for every object. */}}
{{- define "cctv.fullname" -}}
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

{{- define "cctv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The services and their fixed contract with the code: console script, and for Kafka consumers the
consumer group and input topic that lag-based scaling watches. Keys match .Values.services.
*/}}
{{- define "cctv.components" -}}
ingest:
  name: ingest
  command: cctv-ingest
  consumerGroup: cctv-ingest
  topic: cctv.cameras.v1
  lagScaled: false
frameSampler:
  name: frame-sampler
  command: cctv-frame-sampler
  consumerGroup: cctv-frame-sampler
  topic: cctv.video.packets.v1
  lagScaled: true
detector:
  name: detector
  command: cctv-detector
  consumerGroup: cctv-detector
  topic: cctv.frames.v1
  lagScaled: true
alertRouter:
  name: alert-router
  command: cctv-alert-router
  consumerGroup: cctv-alert-router
  topic: cctv.detections.v1
  lagScaled: true
console:
  name: console
  command: cctv-console
  consumerGroup: ""
  topic: ""
  lagScaled: false
clipWriter:
  name: clip-writer
  command: cctv-clip-writer
  consumerGroup: cctv-clip-writer
  topic: cctv.alerts.v1
  lagScaled: true
dispatcher:
  name: dispatcher
  command: cctv-dispatcher
  consumerGroup: cctv-dispatcher
  # Reads one topic per destination (cctv.alerts.<destination>.v1): no single topic to scale on.
  topic: ""
  lagScaled: false
shareGateway:
  name: share-gateway
  command: cctv-share-gateway
  # Every replica reads every share and the packets of shared cameras (no group): scaled on CPU.
  consumerGroup: ""
  topic: ""
  lagScaled: false
{{- end }}

{{/* The Secret holding the key that signs share links (console and share-gateway). */}}
{{- define "cctv.shareKeySecret" -}}
{{- .Values.services.shareGateway.shareKey.existingSecret | default (printf "%s-share-key" (include "cctv.fullname" .)) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "cctv.labels" -}}
helm.sh/chart: {{ include "cctv.chart" . }}
{{ include "cctv.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cctv-platform
{{- end }}

{{- define "cctv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cctv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component; call with (dict "root" $ "component" "frame-sampler"). */}}
{{- define "cctv.componentLabels" -}}
{{ include "cctv.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cctv.componentSelectorLabels" -}}
{{ include "cctv.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cctv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cctv.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference; call with (dict "root" $ "suffix" "-gpu"). */}}
{{- define "cctv.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag }}
{{- printf "%s:%s%s" .root.Values.image.repository $tag (default "" .suffix) }}
{{- end }}

{{/* Pod-level security: non-root uid of the image, RuntimeDefault seccomp. */}}
{{- define "cctv.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cctv.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment shared by every container: Kafka, registry, HTTP and logging. Secrets come only from
Secret references. Call with (dict "root" $ "configFile" "ingest.yaml"), plus "principal" "cctv-ingest" for
a service (its own Kafka user when kafka.principalPerService is on).
*/}}
{{- define "cctv.env" -}}
{{- $v := .root.Values -}}
- name: CCTV_CONFIG_FILE
  value: /etc/cctv/config/{{ .configFile }}
- name: CCTV_KAFKA__BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
- name: CCTV_KAFKA__SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if $v.kafka.saslMechanism }}
- name: CCTV_KAFKA__SASL_MECHANISM
  value: {{ $v.kafka.saslMechanism | quote }}
{{- end }}
{{- if and $v.kafka.principalPerService .principal }}
- name: CCTV_KAFKA__SASL_USERNAME
  value: {{ .principal | quote }}
- name: CCTV_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .principal }}
      key: password
{{- else if $v.kafka.existingSecret }}
- name: CCTV_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.existingSecret }}
      key: {{ $v.kafka.usernameKey }}
- name: CCTV_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.existingSecret }}
      key: {{ $v.kafka.passwordKey }}
{{- end }}
{{- if $v.kafka.tls.caSecret }}
- name: CCTV_KAFKA__SSL_CA_LOCATION
  value: /etc/cctv/kafka-ca/{{ $v.kafka.tls.caKey }}
{{- end }}
- name: CCTV_REGISTRY__URL
  value: {{ $v.registry.url | quote }}
{{- /* The topics Job ("registryWriter") registers schemas as the writer; everyone else only reads. */}}
{{- $registrySecret := $v.registry.existingSecret }}
{{- if and .registryWriter $v.registry.writerSecret }}
{{- $registrySecret = $v.registry.writerSecret }}
{{- end }}
{{- if $registrySecret }}
- name: CCTV_REGISTRY__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $registrySecret }}
      key: {{ $v.registry.usernameKey }}
- name: CCTV_REGISTRY__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $registrySecret }}
      key: {{ $v.registry.passwordKey }}
{{- end }}
{{- if and $v.registry.writerSecret (not .registryWriter) }}
- name: CCTV_REGISTRY__AUTO_REGISTER
  value: "false"
{{- end }}
{{- if $v.registry.tls.caSecret }}
- name: CCTV_REGISTRY__SSL_CA_LOCATION
  value: /etc/cctv/registry-ca/{{ $v.registry.tls.caKey }}
{{- end }}
- name: CCTV_HTTP__PORT
  value: {{ $v.http.port | quote }}
- name: CCTV_LOG__LEVEL
  value: {{ $v.log.level | quote }}
- name: CCTV_LOG__FORMAT
  value: {{ $v.log.format | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes every pod has: /tmp, the config files, the Kafka and registry CAs when set. */}}
{{- define "cctv.commonVolumes" -}}
- name: tmp
  emptyDir:
    {{- if .root.Values.tmpVolume.medium }}
    medium: {{ .root.Values.tmpVolume.medium }}
    {{- end }}
    sizeLimit: {{ .root.Values.tmpVolume.sizeLimit }}
- name: config
  configMap:
    name: {{ .configMap }}
{{- if .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .root.Values.kafka.tls.caSecret }}
    items:
      - key: {{ .root.Values.kafka.tls.caKey }}
        path: {{ .root.Values.kafka.tls.caKey }}
{{- end }}
{{- if .root.Values.registry.tls.caSecret }}
- name: registry-ca
  secret:
    secretName: {{ .root.Values.registry.tls.caSecret }}
    items:
      - key: {{ .root.Values.registry.tls.caKey }}
        path: {{ .root.Values.registry.tls.caKey }}
{{- end }}
{{- end }}

{{- define "cctv.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/cctv/config
  readOnly: true
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/cctv/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.registry.tls.caSecret }}
- name: registry-ca
  mountPath: /etc/cctv/registry-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod settings shared by the hook Jobs and the test Pod. */}}
{{- define "cctv.hookPodSpec" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if not .Values.serviceAccount.create }}
serviceAccountName: {{ include "cctv.serviceAccountName" . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- include "cctv.podSecurityContext" . | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* `--destination X` flags shared by `cctv topics create` and `cctv topics check`. */}}
{{- define "cctv.destinationArgs" -}}
{{- range .Values.topicsJob.destinations }}, "--destination", {{ . | quote }}{{ end }}
{{- end }}
