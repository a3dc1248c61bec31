# Inputs of the per-cluster access module: what the responder's identity may do in one cluster.

variable "responder_identity" {
  description = "E-mail of the responder's Google service account (the root module's function_service_account_email output): the RBAC subject (User) of every binding, and the identity the admission guard constrains."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\\.iam\\.gserviceaccount\\.com$", var.responder_identity))
    error_message = "responder_identity must be a service-account e-mail (NAME@PROJECT.iam.gserviceaccount.com)."
  }
}

variable "enable_process_capture" {
  description = "Apply deploy/kubernetes/rbac-capture.yaml (the exec ClusterRole for `ps axjf` and socket evidence). Keep it equal to the root module's enable_process_capture, which tells the responder (RESPONDER_PROCESS_CAPTURE) whether to try."
  type        = bool
  default     = false
  nullable    = false
}

variable "enable_admission_guard" {
  description = "Apply deploy/kubernetes/admission-guard.yaml and identity-guard.yaml (ValidatingAdmissionPolicy + binding each: the cluster refuses what the responder must never do; a quarantined pod's token may not write). Needs GKE 1.30+."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_cluster_quarantine_policy" {
  description = "Apply deploy/kubernetes/cluster-quarantine.yaml: the static Admin-tier ClusterNetworkPolicy denying all traffic of quarantined pods. Only for a cluster that serves ClusterNetworkPolicy (GKE Dataplane V2 from 1.36.0-gke.4447000, Preview): the kubernetes provider needs the CRD at plan time."
  type        = bool
  default     = false
  nullable    = false
}

variable "cluster_quarantine_priority" {
  description = "The ClusterNetworkPolicy's Admin-tier priority (0-1000, lower wins): keep it better than every Admin-tier Accept in the cluster."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.cluster_quarantine_priority >= 0 && var.cluster_quarantine_priority <= 1000 && floor(var.cluster_quarantine_priority) == var.cluster_quarantine_priority
    error_message = "cluster_quarantine_priority must be a whole number from 0 to 1000."
  }
}

variable "manifests_dir" {
  description = "Directory holding the manifests (rbac.yaml, rbac-capture.yaml, admission-guard.yaml, identity-guard.yaml, cluster-quarantine.yaml). null: deploy/kubernetes of this repository (three levels above the module)."
  type        = string
  default     = null
}
