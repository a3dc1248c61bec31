# The responder's access to one cluster: RBAC (rbac.yaml), and behind their toggles the exec ClusterRole, the admission
# guard with the identity quarantine, and the static Admin-tier ClusterNetworkPolicy. Applied with the kubernetes
# provider the caller passes in; instantiate the module once per cluster (terraform/examples/fleet). The root module
# applies rbac_cluster through it too: its moved blocks name these resources, so keep their names.

# Namespace, ClusterRole, ClusterRoleBinding.
resource "kubernetes_manifest" "rbac_cluster_scoped" {
  for_each = local.rbac_cluster_scoped

  manifest = each.value
}

# Role and RoleBinding for the budget Leases, inside the namespace created above.
resource "kubernetes_manifest" "rbac_namespaced" {
  for_each = local.rbac_namespaced

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped]
}

resource "kubernetes_manifest" "process_capture" {
  for_each = local.capture_manifests

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped, kubernetes_manifest.rbac_namespaced]
}

resource "kubernetes_manifest" "admission_guard" {
  for_each = local.admission_guard_manifests

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped, kubernetes_manifest.rbac_namespaced]
}

resource "kubernetes_manifest" "cluster_quarantine" {
  for_each = local.cluster_quarantine_manifests

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped]
}
