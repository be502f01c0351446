{{/* The release's name for its objects: fullnameOverride, else <release>-kubestudio (once). */}}
{{- define "kubestudio.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains "kubestudio" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kubestudio" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubestudio.name" -}}{{ include "kubestudio.fullname" . }}-{{ .component }}{{- end -}}

{{/* Labels on every object; "component" is hub, proxy, storage... */}}
{{- define "kubestudio.labels" -}}
app.kubernetes.io/name: kubestudio
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "kubestudio.selector" -}}
app.kubernetes.io/name: kubestudio
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kubestudio.image" -}}{{ .name }}:{{ .tag }}{{- end -}}

{{/* Object names */}}
{{- define "kubestudio.hub" -}}{{ include "kubestudio.fullname" . }}-hub{{- end -}}
{{- define "kubestudio.argoExecutor" -}}{{ include "kubestudio.fullname" . }}-argo-executor{{- end -}}
{{- define "kubestudio.proxyPublic" -}}{{ include "kubestudio.fullname" . }}-proxy-public{{- end -}}
{{- define "kubestudio.proxyApi" -}}{{ include "kubestudio.fullname" . }}-proxy-api{{- end -}}
{{- define "kubestudio.proxy" -}}{{ include "kubestudio.fullname" . }}-proxy{{- end -}}
{{- define "kubestudio.secret" -}}{{ include "kubestudio.fullname" . }}-secret{{- end -}}
{{- define "kubestudio.workspaceClaim" -}}{{ .Values.storage.workspace.existingClaim | default "kubestudio-workspace" }}{{- end -}}
{{- define "kubestudio.archivesClaim" -}}{{ .Values.storage.archives.existingClaim | default "kubestudio-archives" }}{{- end -}}
{{/* "true" when the registry gate runs (a registry, image builds, the gate on), else empty */}}
{{- define "kubestudio.registryGate" -}}
{{- if and .Values.registry.host .Values.services.images.enabled .Values.registry.gate.enabled -}}true{{- end -}}
{{- end -}}
{{- define "kubestudio.registrySecret" -}}{{ .Values.registry.existingSecret | default (printf "%s-registry" (include "kubestudio.fullname" .)) }}{{- end -}}

{{/* A secret value generated once: the one already in the release's Secret, else the given one, else random. */}}
{{- define "kubestudio.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "kubestudio.secret" .root) -}}
{{- if .value -}}
{{- .value -}}
{{- else if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else if .hex -}}
{{- randAlphaNum 64 | sha256sum -}}
{{- else -}}
{{- randAlphaNum 64 -}}
{{- end -}}
{{- end -}}
