# Kubernetes RBAC for the function's identity, rendered from deploy/kubernetes/rbac.yaml (the single source of truth;
# see local.rbac_rendered). Off by default: the kubernetes provider needs network access to the cluster's control
# plane at plan time and handles one cluster per run. The alternative, per cluster, is the rbac_apply_command output:
#   sed 's/${responder_identity}/SA_EMAIL/' deploy/kubernetes/rbac.yaml | kubectl apply -f -

data "google_client_config" "current" {
  count = var.manage_kubernetes_rbac ? 1 : 0
}

data "google_container_cluster" "rbac" {
  count = var.manage_kubernetes_rbac ? 1 : 0

  project  = var.rbac_cluster.project
  location = var.rbac_cluster.location
  name     = var.rbac_cluster.name
}

locals {
  rbac_cluster_host  = one([for c in data.google_container_cluster.rbac : "https://${c.endpoint}"])
  rbac_cluster_ca    = one([for c in data.google_container_cluster.rbac : base64decode(c.master_auth[0].cluster_ca_certificate)])
  rbac_cluster_token = one(data.google_client_config.current[*].access_token)
}

# Namespace, ClusterRole, ClusterRoleBinding.
resource "kubernetes_manifest" "rbac_cluster_scoped" {
  for_each = { for key, doc in local.rbac_cluster_scoped : key => doc if var.manage_kubernetes_rbac }

  manifest = each.value
}

# Role and RoleBinding for the budget Leases, inside the namespace created above.
resource "kubernetes_manifest" "rbac_namespaced" {
  for_each = { for key, doc in local.rbac_namespaced : key => doc if var.manage_kubernetes_rbac }

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped]
}
