# Kubernetes RBAC for the function's identity in one cluster (rbac_cluster), applied with this module's kubernetes
# provider through modules/cluster-access: the same module a fleet instantiates once per cluster, so deploy/kubernetes/
# is rendered in one place only. It applies rbac.yaml and, each behind its toggle, the exec ClusterRole
# (rbac-capture.yaml), the admission guard with the identity quarantine (admission-guard.yaml, identity-guard.yaml) and
# the static Admin-tier ClusterNetworkPolicy (cluster-quarantine.yaml). Off by default: the kubernetes provider needs
# network access to the cluster's control plane at plan time and handles one cluster per run. The alternative, per
# cluster, is the rbac_apply_command output:
#   sed 's/${responder_identity}/SA_EMAIL/' deploy/kubernetes/rbac.yaml | kubectl apply -f -
#
# The cluster is read whenever rbac_cluster is set, whatever manage_kubernetes_rbac says: after the toggle goes from on
# to off, the objects are still in state and the provider needs the cluster to delete them.

data "google_client_config" "current" {
  count = var.rbac_cluster != null ? 1 : 0
}

# Through the bootstrap provider (versions.tf): read at plan time, possibly before this module has enabled the
# Kubernetes Engine API in project_id; the cluster's own project has it on.
data "google_container_cluster" "rbac" {
  provider = google.bootstrap
  count    = var.rbac_cluster != null ? 1 : 0

  project  = var.rbac_cluster.project
  location = var.rbac_cluster.location
  name     = var.rbac_cluster.name
}

# ip: Cluster.endpoint and the cluster CA, reachable only where that IP is (the public IP, or inside the VPC for a
# private-endpoint cluster). dns: the DNS-based endpoint (gke-....gke.goog) with the same OAuth token, reachable from
# anywhere IAM allows, also when the cluster has only a private endpoint or its IP endpoints are off.
locals {
  rbac_cluster_dns_host = one([
    for c in data.google_container_cluster.rbac :
    "https://${c.control_plane_endpoints_config[0].dns_endpoint_config[0].endpoint}"
  ])
  rbac_cluster_ip_host = one([for c in data.google_container_cluster.rbac : "https://${c.endpoint}"])
  rbac_cluster_host    = var.rbac_cluster_endpoint == "dns" ? local.rbac_cluster_dns_host : local.rbac_cluster_ip_host
  rbac_cluster_ca = var.rbac_cluster_endpoint == "dns" ? null : one([
    for c in data.google_container_cluster.rbac : base64decode(c.master_auth[0].cluster_ca_certificate)
  ])
  rbac_cluster_token = one(data.google_client_config.current[*].access_token)
}

# manage_kubernetes_rbac: the module, once, with this module's kubernetes provider. Switching the toggle off removes the
# module's instance, so its objects are deleted (through the provider above, which keeps its cluster).
module "rbac_cluster" {
  source    = "./modules/cluster-access"
  count     = var.manage_kubernetes_rbac ? 1 : 0
  providers = { kubernetes = kubernetes }

  responder_identity               = local.function_sa_email
  enable_process_capture           = var.enable_process_capture
  enable_admission_guard           = var.enable_admission_guard
  enable_cluster_quarantine_policy = var.enable_cluster_quarantine_policy
  cluster_quarantine_priority      = var.cluster_quarantine_priority
}

# The objects this module used to apply with its own kubernetes_manifest resources now belong to the module instance.
# Each block moves every instance of one resource, keys unchanged (the module keys its maps exactly as the root did:
# kind/name, kind/namespace/name, kind/namespace-or-empty/name, kind//name), so an existing state is moved, not
# destroyed and re-created. With manage_kubernetes_rbac off there was nothing to move, and nothing is.
moved {
  from = kubernetes_manifest.rbac_cluster_scoped
  to   = module.rbac_cluster[0].kubernetes_manifest.rbac_cluster_scoped
}

moved {
  from = kubernetes_manifest.rbac_namespaced
  to   = module.rbac_cluster[0].kubernetes_manifest.rbac_namespaced
}

moved {
  from = kubernetes_manifest.process_capture
  to   = module.rbac_cluster[0].kubernetes_manifest.process_capture
}

moved {
  from = kubernetes_manifest.admission_guard
  to   = module.rbac_cluster[0].kubernetes_manifest.admission_guard
}

moved {
  from = kubernetes_manifest.cluster_quarantine
  to   = module.rbac_cluster[0].kubernetes_manifest.cluster_quarantine
}
