# Kubernetes RBAC for the function's identity, rendered from deploy/kubernetes/rbac.yaml (the single source of truth;
# see local.rbac_rendered), plus, each behind its toggle, the exec ClusterRole (rbac-capture.yaml) and the admission
# guard (admission-guard.yaml, with the identity quarantine identity-guard.yaml). Off by default: the kubernetes
# provider needs network access to the cluster's control plane at plan time and handles one cluster per run. The
# alternative, per cluster, is the rbac_apply_command output:
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

# enable_process_capture: the exec rights, in their own ClusterRole so that they can be left out.
resource "kubernetes_manifest" "process_capture" {
  for_each = { for key, doc in local.capture_manifests : key => doc if var.manage_kubernetes_rbac && var.enable_process_capture }

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped, kubernetes_manifest.rbac_namespaced]
}

# enable_admission_guard: the guard's and the identity quarantine's ValidatingAdmissionPolicy + binding each
# (admission-guard.yaml, identity-guard.yaml; GKE 1.30+).
resource "kubernetes_manifest" "admission_guard" {
  for_each = { for key, doc in local.admission_guard_manifests : key => doc if var.manage_kubernetes_rbac && var.enable_admission_guard }

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped, kubernetes_manifest.rbac_namespaced]
}

# enable_cluster_quarantine_policy: the static Admin-tier ClusterNetworkPolicy (cluster-quarantine.yaml) that holds a
# quarantined pod ahead of any Admin-tier Accept at a worse priority. Cluster-scoped, applied by Terraform's identity,
# never by the responder's.
resource "kubernetes_manifest" "cluster_quarantine" {
  for_each = { for key, doc in local.cluster_quarantine_manifests : key => doc if var.manage_kubernetes_rbac && var.enable_cluster_quarantine_policy }

  manifest = each.value

  depends_on = [kubernetes_manifest.rbac_cluster_scoped]
}
