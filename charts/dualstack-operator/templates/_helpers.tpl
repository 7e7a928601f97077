{{/*
Names are fixed, as in manifests/: the operator names its peering object, webhook
configuration and admission policies "dualstack-operator", so one release per cluster.
*/}}
{{- define "dualstack.name" -}}dualstack-operator{{- end -}}

{{- define "dualstack.selectorLabels" -}}
app.kubernetes.io/name: dualstack-operator
{{- end -}}

{{/* Every object's labels; the operator's own workload and Services (and what selects
them) carry its name too, as in manifests/. */}}
{{- define "dualstack.labels" -}}
app.kubernetes.io/part-of: dualstack-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dualstack.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* admission, where a values file's bare `off` (YAML 1.1: false) means "off". */}}
{{- define "dualstack.admission" -}}
{{- if eq (toString .Values.admission) "false" -}}off{{- else -}}{{ .Values.admission }}{{- end -}}
{{- end -}}

{{/* The webhook runs for admission webhook, and for auto (its fallback before v1.36). */}}
{{- define "dualstack.webhook" -}}
{{- if has (include "dualstack.admission" .) (list "webhook" "auto") -}}true{{- end -}}
{{- end -}}

{{- define "dualstack.subject" -}}
- kind: ServiceAccount
  name: dualstack-operator
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{- define "dualstack.namedLabels" -}}
{{ include "dualstack.selectorLabels" . }}
{{ include "dualstack.labels" . }}
{{- end -}}
