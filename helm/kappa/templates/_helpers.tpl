{{- define "kappa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kappa.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kappa.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kappa.labels" -}}
app.kubernetes.io/name: {{ include "kappa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kappa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kappa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kappa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kappa.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kappa.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Mounts of every Kappa container: the pipeline file, the contracts, a writable /tmp. */}}
{{- define "kappa.volumeMounts" -}}
- name: pipeline
  mountPath: /etc/kappa/pipeline.toml
  subPath: pipeline.toml
  readOnly: true
{{- if .Values.contracts.configMap }}
- name: contracts
  mountPath: /etc/kappa/contracts
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The volumes behind kappa.volumeMounts. */}}
{{- define "kappa.volumes" -}}
- name: pipeline
  configMap:
    name: {{ include "kappa.fullname" . }}-pipeline
{{- if .Values.contracts.configMap }}
- name: contracts
  configMap:
    name: {{ .Values.contracts.configMap }}
    {{- with .Values.contracts.items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end }}

{{/* Pod-level settings shared by the live Deployment and the replay Job. */}}
{{- define "kappa.podPlacement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
