{{/*
The checks values.schema.json cannot say clearly: each stops helm with one sentence naming the
value. Included once, by the StatefulSet.
*/}}
{{- define "ringkv.validate" -}}
{{- $chartFlags := list "--data" "--listen" "--peer-listen" "--http" "--advertise" "--peer-advertise" "--node-id" "--initial-cluster" "--join" "--zone" "--cluster-name" "--shards" "--replicas" "--meta-replicas" "--cert-file" "--key-file" "--ca-file" "--client-cert-auth" "--auth-file" "--log-level" "--log-format" "--config" }}
{{- range .Values.ringkv.extraArgs }}
{{- $flag := regexReplaceAll "=.*$" . "" }}
{{- if has $flag $chartFlags }}
{{- fail (printf "ringkv.extraArgs: %s is set by the chart itself (see values.yaml: ports, zone, tls, auth, ringkv.*); remove it from extraArgs" $flag) }}
{{- end }}
{{- end }}
{{- range $field, $labels := dict "podLabels" .Values.podLabels "service.labels" .Values.service.labels "metrics.serviceMonitor.labels" .Values.metrics.serviceMonitor.labels }}
{{- range $key, $_ := $labels }}
{{- if hasPrefix "app.kubernetes.io/" $key }}
{{- fail (printf "%s: %s is one of the chart's own labels (app.kubernetes.io/*); choose another key" $field $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.zone.bootstrap (or .Values.zone.value .Values.zone.fromPodLabel | not) }}
{{- fail "zone.bootstrap: the joining pods need a zone too (zone.value or zone.fromPodLabel), or every node beyond the first three has none" }}
{{- end }}
{{- if gt (int .Values.ringkv.metaReplicas) 3 }}
{{- fail (printf "ringkv.metaReplicas: %d is more than the 3 bootstrap pods a new cluster is placed on: it would start, and stay, under-replicated" (int .Values.ringkv.metaReplicas)) }}
{{- end }}
{{- if gt (int .Values.ringkv.shardReplicas) 3 }}
{{- fail (printf "ringkv.shardReplicas: %d is more than the 3 bootstrap pods a new cluster is placed on: it would start, and stay, under-replicated" (int .Values.ringkv.shardReplicas)) }}
{{- end }}
{{- end }}
