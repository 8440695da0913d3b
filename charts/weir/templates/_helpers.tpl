{{- define "weir.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "weir.labels" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of one component's pods: (dict "root" $ "component" "xds-server"). */}}
{{- define "weir.selector" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Flags every long-running component takes. */}}
{{- define "weir.commonArgs" -}}
- --admin-addr=0.0.0.0:18090
- --log-format={{ .Values.logging.format }}
- --log-level={{ .Values.logging.level }}
{{- end -}}

{{/* Leader election flags: (dict "root" $ "replicas" N). */}}
{{- define "weir.leaderArgs" -}}
{{- if .root.Values.leaderElection.enabled }}
- --leader-elect=true
- --leader-lease-seconds={{ .root.Values.leaderElection.leaseSeconds }}
{{- else }}
- --leader-elect=false
{{- end }}
{{- end -}}

{{/* The downward API: the Lease namespace and this replica's identity. */}}
{{- define "weir.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- end -}}

{{/* Pod-level settings shared by every component: (dict "root" $ "values" .Values.x). */}}
{{- define "weir.podSpec" -}}
securityContext: {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes on the admin endpoint. */}}
{{- define "weir.probes" -}}
readinessProbe: {httpGet: {path: /readyz, port: admin}, periodSeconds: 5, failureThreshold: 3}
livenessProbe: {httpGet: {path: /healthz, port: admin}, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 3}
{{- end -}}

{{/* A PodDisruptionBudget: (dict "root" $ "component" "xds-server" "replicas" N). */}}
{{- define "weir.pdb" -}}
{{- if and .root.Values.podDisruptionBudget.enabled (gt (int .replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .root.Release.Name }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "weir.labels" .root | nindent 4 }}
spec:
  maxUnavailable: {{ .root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels: {{- include "weir.selector" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The Role and RoleBinding for a component's leader-election Lease. */}}
{{- define "weir.leaseRole" -}}
{{- if .root.Values.leaderElection.enabled }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .root.Release.Name }}-{{ .component }}-leader
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "weir.labels" .root | nindent 4 }}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .root.Release.Name }}-{{ .component }}-leader
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "weir.labels" .root | nindent 4 }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: {{ .root.Release.Name }}-{{ .component }}-leader}
subjects:
  - {kind: ServiceAccount, name: {{ .root.Release.Name }}-{{ .component }}, namespace: {{ .root.Release.Namespace }}}
{{- end }}
{{- end -}}

{{/* A ServiceAccount and a Service on the admin port (for scraping): (dict "root" $ "component" "x"). */}}
{{- define "weir.accountAndAdmin" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .root.Release.Name }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "weir.labels" .root | nindent 4 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .root.Release.Name }}-{{ .component }}-admin
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "weir.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    weir.io/admin: "true"
spec:
  selector: {{- include "weir.selector" . | nindent 4 }}
  ports:
    - {name: admin, port: 18090, targetPort: admin}
{{- end -}}
