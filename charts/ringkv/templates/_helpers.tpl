{{/*
Names, labels and the cluster's wiring, defined once and used by every template.
*/}}

{{- define "ringkv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix; short enough that "<fullname>-headless" and pod names fit 63. */}}
{{- define "ringkv.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ringkv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects the StatefulSet's pods (the StatefulSet, both Services, the PDB, spreads). */}}
{{- define "ringkv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringkv.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: node
{{- end }}

{{- define "ringkv.labels" -}}
helm.sh/chart: {{ include "ringkv.chart" . | quote }}
app.kubernetes.io/name: {{ include "ringkv.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{- define "ringkv.headless" -}}
{{- printf "%s-headless" (include "ringkv.fullname" .) }}
{{- end }}

{{/* <headless>.<namespace>.svc.<clusterDomain>: each pod is <pod>.<this>. */}}
{{- define "ringkv.peerDomain" -}}
{{- printf "%s.%s.svc.%s" (include "ringkv.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* The client Service's full DNS name. */}}
{{- define "ringkv.clientHost" -}}
{{- printf "%s.%s.svc.%s" (include "ringkv.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "ringkv.podHost" -}}
{{- printf "%s-%d.%s" (include "ringkv.fullname" .root) (int .ordinal) (include "ringkv.peerDomain" .root) }}
{{- end }}

{{/*
kvd --initial-cluster of the three bootstrap pods: ID=CLIENT/PEER[@ZONE], node id = ordinal + 1.
It never depends on replicaCount, so scaling never changes it and never restarts a pod.
*/}}
{{- define "ringkv.initialCluster" -}}
{{- $root := . }}
{{- $members := list }}
{{- range $i := until 3 }}
{{- $host := include "ringkv.podHost" (dict "root" $root "ordinal" $i) }}
{{- $member := printf "%d=%s:%d/%s:%d" (add1 $i) $host (int $root.Values.ports.client) $host (int $root.Values.ports.peer) }}
{{- if $root.Values.zone.bootstrap }}
{{- $member = printf "%s@%s" $member (index $root.Values.zone.bootstrap $i) }}
{{- end }}
{{- $members = append $members $member }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{/* kvd --join of pods 3 and up: the bootstrap pods' client addresses. */}}
{{- define "ringkv.joinSeeds" -}}
{{- $root := . }}
{{- $seeds := list }}
{{- range $i := until 3 }}
{{- $seeds = append $seeds (printf "%s:%d" (include "ringkv.podHost" (dict "root" $root "ordinal" $i)) (int $root.Values.ports.client)) }}
{{- end }}
{{- join "," $seeds }}
{{- end }}

{{- define "ringkv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "ringkv.nodeTlsSecret" -}}
{{- if eq .Values.tls.source "certManager" }}
{{- printf "%s-node-tls" (include "ringkv.fullname" .) }}
{{- else }}
{{- .Values.tls.secret.nodeSecretName }}
{{- end }}
{{- end }}

{{- define "ringkv.adminTlsSecret" -}}
{{- if eq .Values.tls.source "certManager" }}
{{- printf "%s-admin-tls" (include "ringkv.fullname" .) }}
{{- else }}
{{- .Values.tls.secret.adminSecretName }}
{{- end }}
{{- end }}

{{/* The environment of the chart's own kvctl (scale-down check, helm test). */}}
{{- define "ringkv.kvctlEnv" -}}
- name: KVCTL_ENDPOINTS
  value: {{ printf "%s:%d" (include "ringkv.clientHost" .) (int .Values.ports.client) | quote }}
- name: KVCTL_DEADLINE_MS
  value: "10000"
{{- if .Values.tls.enabled }}
- name: KVCTL_CA_FILE
  value: /etc/ringkv/admin-tls/ca.crt
- name: KVCTL_CERT_FILE
  value: /etc/ringkv/admin-tls/tls.crt
- name: KVCTL_KEY_FILE
  value: /etc/ringkv/admin-tls/tls.key
{{- end }}
{{- if .Values.auth.clientToken.secretName }}
- name: KVCTL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.clientToken.secretName | quote }}
      key: {{ .Values.auth.clientToken.key | quote }}
{{- end }}
{{- end }}

{{- define "ringkv.kvctlVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: admin-tls
  mountPath: /etc/ringkv/admin-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "ringkv.kvctlVolumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: admin-tls
  secret:
    secretName: {{ include "ringkv.adminTlsSecret" . | quote }}
    defaultMode: 288 # 0o440: read by the owner and the group (fsGroup)
{{- end }}
{{- end }}
