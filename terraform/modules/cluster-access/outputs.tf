output "objects" {
  description = "The objects applied to the cluster, as kind/namespace/name (namespace empty for cluster-scoped objects)."
  value = sort(concat(
    [for doc in values(local.rbac_cluster_scoped) : "${doc.kind}//${doc.metadata.name}"],
    [for doc in values(local.rbac_namespaced) : "${doc.kind}/${doc.metadata.namespace}/${doc.metadata.name}"],
    keys(local.capture_manifests),
    keys(local.admission_guard_manifests),
    keys(local.cluster_quarantine_manifests),
  ))
}
