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

{{/*
The pod template of a backfill Job: `ctx` the root context, `component` its label, `args` the
kappa arguments after `backfill`, `index` whether the pod needs JOB_COMPLETION_INDEX.
*/}}
{{- define "kappa.backfillPod" -}}
{{- $ := .ctx -}}
metadata:
  labels:
    {{- include "kappa.selectorLabels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/pipeline: {{ $.Values.pipeline | sha256sum }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "kappa.serviceAccountName" $ }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: backfill
      image: {{ include "kappa.image" $ | quote }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args:
        - --log={{ $.Values.logLevel }}
        - --log-format={{ $.Values.logFormat }}
        - backfill
        {{- range .args }}
        - {{ . }}
        {{- end }}
        - -c
        - /etc/kappa/pipeline.toml
        - --from={{ $.Values.backfill.from }}
        - --to={{ $.Values.backfill.to }}
        {{- range $.Values.backfill.set }}
        - --set={{ . }}
        {{- end }}
        - --json
      {{- if or .index $.Values.env }}
      env:
        {{- if .index }}
        - name: JOB_COMPLETION_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
        {{- end }}
        {{- with $.Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- with $.Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml $.Values.resources | nindent 8 }}
      volumeMounts:
        {{- include "kappa.volumeMounts" $ | nindent 8 }}
  volumes:
    {{- include "kappa.volumes" $ | nindent 4 }}
  {{- include "kappa.podPlacement" $ | nindent 2 }}
{{- end }}

{{/*
A backfill pod's podFailurePolicy: exit 2 (configuration), 3 (a gate blocked) and 4 (schema)
fail at once, without a retry (`action`: FailIndex for the shards, FailJob for the others); a
pod disrupted by the cluster (eviction, preemption) is retried without counting.
*/}}
{{- define "kappa.backfillFailurePolicy" -}}
podFailurePolicy:
  rules:
    - action: {{ . }}
      onExitCodes:
        containerName: backfill
        operator: In
        values: [2, 3, 4]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
{{- end }}
