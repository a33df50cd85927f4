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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kappa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kappa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
An object's labels with labels of its own (`extra`: a monitor's `release`, the dashboard's
sidecar label) and its `component` (if any): commonLabels, then `extra` over them, then the
chart's (app.kubernetes.io/*, helm.sh/chart).
*/}}
{{- define "kappa.labelsWith" -}}
{{- $labels := include "kappa.labels" .ctx | fromYaml }}
{{- with .component }}{{ $_ := set $labels "app.kubernetes.io/component" . }}{{ end }}
{{- range $k, $v := .extra }}
{{- if not (or (hasPrefix "app.kubernetes.io/" $k) (eq $k "helm.sh/chart")) }}
{{- $_ := set $labels $k (toString $v) }}
{{- end }}
{{- end }}
{{- toYaml $labels }}
{{- end -}}

{{/*
A pod template's labels (`ctx`, `component`): the selector's and the component, then podLabels,
then commonLabels; a key set twice keeps the first.
*/}}
{{- define "kappa.podLabels" -}}
{{- $labels := include "kappa.selectorLabels" .ctx | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" .component }}
{{- $labels = merge $labels (deepCopy (.ctx.Values.podLabels | default dict)) (deepCopy (.ctx.Values.commonLabels | default dict)) }}
{{- toYaml $labels }}
{{- end -}}

{{/* An image reference: <repository>@<digest> when a digest is set (it wins over the tag), else <repository>:<tag>. */}}
{{- define "kappa.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) -}}
{{- end -}}
{{- end -}}

{{/*
The pipeline, checked before it is mounted: present and not blank, and its policies known ones
(a misspelt policy would otherwise only fail the pods, later; `kappa` names the same key). Reads
the TOML line by line: `[section]` headers, then `policy = "..."` (quality: block, quarantine,
warn) and `late_policy = "..."` ([event_time]: append, late_table), also as dotted keys.
*/}}
{{- define "kappa.checkPipeline" -}}
{{- $text := toString (.Values.pipeline | default "") }}
{{- if not (regexMatch "\\S" $text) }}
{{- fail "pipeline is required: the pipeline's TOML (docs/configuration.md), e.g. --set-file pipeline=pipeline.toml" }}
{{- end }}
{{- $section := "" }}
{{- range $line := splitList "\n" $text }}
{{- $l := trim $line }}
{{- if regexMatch "^\\[\\[?[^\\]]+\\]\\]?" $l }}
{{- $section = regexReplaceAll "^\\[\\[?\\s*([^\\]]*?)\\s*\\]\\]?.*$" $l "${1}" }}
{{- else if regexMatch "^([A-Za-z0-9_\"-]+\\.)*(policy|late_policy)\\s*=" $l }}
{{- $key := regexReplaceAll "^(\\S*?)\\s*=.*$" $l "${1}" }}
{{- $value := regexReplaceAll "^[^=]*=\\s*[\"']?([^\"'#]*?)[\"']?\\s*(#.*)?$" $l "${1}" }}
{{- $where := printf "[%s] %s" $section $key }}
{{- if not $section }}{{ $where = $key }}{{ end }}
{{- if hasSuffix "late_policy" $key }}
{{- if not (has (trim $value) (list "append" "late_table")) }}
{{- fail (printf "pipeline: %s: %q: expected \"append\" or \"late_table\"" $where $value) }}
{{- end }}
{{- else if not (has $value (list "block" "quarantine" "warn")) }}
{{- fail (printf "pipeline: %s: unknown policy %q; expected block|quarantine|warn" $where $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "kappa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kappa.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kappa.image" -}}
{{- include "kappa.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{/* A container's resources (`ctx`, `own`): its own when set, else the top-level `resources`. */}}
{{- define "kappa.resources" -}}
{{- toYaml (.own | default .ctx.Values.resources | default dict) }}
{{- end -}}

{{/* Mounts of every Kappa container: the pipeline file, the contracts, a writable /tmp, extraVolumeMounts. */}}
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
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The volumes behind kappa.volumeMounts, and extraVolumes. */}}
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
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every Kappa pod (`ctx` the root context, `component` the pod's
label): placement, priority, and the topology spread constraints, each without a labelSelector
given one that selects the pods of this release and component.
*/}}
{{- define "kappa.podPlacement" -}}
{{- $ctx := .ctx }}
{{- $component := .component }}
{{- with $ctx.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ctx.Values.topologySpreadConstraints }}
{{- $constraints := list }}
{{- range . }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $selector := include "kappa.selectorLabels" $ctx | fromYaml }}
{{- $_ := set $selector "app.kubernetes.io/component" $component }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $constraints = append $constraints $c }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $constraints | nindent 2 }}
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
    {{- include "kappa.podLabels" (dict "ctx" $ "component" .component) | nindent 4 }}
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
      env:
        {{- if .index }}
        - name: JOB_COMPLETION_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
        {{- end }}
        # /metrics, /healthz, /readyz while the step runs (and [metrics] linger after): a
        # shard's progress is its archive source's kappa_source_* series.
        - name: KAPPA__METRICS__LISTEN
          value: "0.0.0.0:{{ $.Values.metrics.port }}"
        {{- with $.Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $.Values.metrics.port }}
          protocol: TCP
      {{- with $.Values.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
      resources:
        {{- include "kappa.resources" (dict "ctx" $ "own" $.Values.replay.resources) | nindent 8 }}
      volumeMounts:
        {{- include "kappa.volumeMounts" $ | nindent 8 }}
  volumes:
    {{- include "kappa.volumes" $ | nindent 4 }}
  {{- include "kappa.podPlacement" (dict "ctx" $ "component" .component) | nindent 2 }}
{{- end }}

{{/*
A replay or backfill Job's podFailurePolicy: exit 2 (configuration), 3 (a gate blocked) and 4
(schema) fail at once, without a retry that would end the same way (`action`: FailIndex for an
indexed Job's shard, FailJob for the others; `container`: the pod's container); a pod disrupted
by the cluster (eviction, preemption) is retried without counting.
*/}}
{{- define "kappa.failurePolicy" -}}
podFailurePolicy:
  rules:
    - action: {{ .action }}
      onExitCodes:
        containerName: {{ .container }}
        operator: In
        values: [2, 3, 4]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
{{- end }}
