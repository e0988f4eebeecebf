{{/* Names, labels and the RBAC rules shared by the templates. */}}

{{- define "convergence.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "convergence.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "convergence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "convergence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "convergence.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "convergence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "convergence.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "convergence.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "convergence.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The namespaces watched: empty means all of them. */}}
{{- define "convergence.watchedNamespaces" -}}
{{- if not .Values.watch.allNamespaces -}}
{{- if not .Values.watch.namespaces -}}
{{- fail "watch.namespaces must name at least one namespace when watch.allNamespaces is false" -}}
{{- end -}}
{{- join "," .Values.watch.namespaces -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in a watched namespace, and nothing more (each rule
names the code that needs it):
- Stacks: kopf lists and watches them, patches its finalizer and annotations,
  and patches status; the engine reads them.
- StackResources: the engine creates, reads, lists and deletes them and
  patches their status (sync points, phase); kopf watches them.
- ControllerRevisions: the stack's immutable template revisions.
- ConfigMaps: the physical resources of OS::Heat::TestResource (server-side
  apply creates them), and parametersFrom.
- Secrets: read for parametersFrom.
- Events: kopf's and the operator's reports.
- ServiceAccounts (impersonate, multi-tenant mode only) and
  rbac.stackObjectRules: stacks' Kubernetes objects (reconcilers/kubernetes_object.py).
*/}}
{{- define "convergence.namespacedRules" -}}
# create, delete: a nested stack (OS::Heat::Stack) is a Stack its parent owns.
- apiGroups: [convergence.dev]
  resources: [stacks]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [convergence.dev]
  resources: [stacks/status]
  verbs: [patch]
- apiGroups: [convergence.dev]
  resources: [stackresources]
  # patch: releasing a StackResource's finalizer before its delete.
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [convergence.dev]
  resources: [stackresources/status]
  verbs: [patch]
# StackPreviews: answered in their status (patch: kopf's progress annotations).
- apiGroups: [convergence.dev]
  resources: [stackpreviews]
  verbs: [get, list, watch, patch]
- apiGroups: [convergence.dev]
  resources: [stackpreviews/status]
  verbs: [patch]
# Template revisions: patch marks the last completed one, delete prunes old ones.
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, create, patch, delete]
# get: parametersFrom and template revisions' values; create, patch, delete:
# OS::Heat::RandomString's Secrets and revisions' values.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.multiTenant.enabled }}
# Multi-tenant mode: stacks' Kubernetes objects are applied as the stack's
# ServiceAccount.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [impersonate]
{{- end }}
{{- with .Values.rbac.stackObjectRules }}
# rbac.stackObjectRules: objects stacks manage with the operator's identity.
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Stack webhook's Service, Secret and TLS source ("cert-manager" or "helm"). */}}
{{- define "convergence.webhookService" -}}
{{- printf "%s-webhook" (include "convergence.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "convergence.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "convergence.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "convergence.webhookTLS" -}}
{{- $source := .Values.webhook.certificate.source -}}
{{- if eq $source "auto" -}}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate" -}}cert-manager{{- else -}}helm{{- end -}}
{{- else -}}
{{- $source -}}
{{- end -}}
{{- end -}}
