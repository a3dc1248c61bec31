# The manifests, rendered from deploy/kubernetes/: the only rendering there is (the root module applies rbac_cluster
# through this module too). Pure: no resource or provider reference. The for_each keys (kind/name, kind/namespace/name,
# kind/namespace-or-empty/name, kind//name) are the ones the root module's own resources had: its moved blocks
# (kubernetes.tf there) rely on them, so changing one re-creates that object in every existing deployment.

locals {
  manifests_dir = coalesce(var.manifests_dir, "${path.module}/../../../deploy/kubernetes")
  template_vars = { responder_identity = var.responder_identity }

  rbac_documents = [
    for doc in [for chunk in split("\n---\n", "\n${templatefile("${local.manifests_dir}/rbac.yaml", local.template_vars)}\n") : yamldecode(chunk)] :
    doc if try(doc.kind, null) != null
  ]
  # Namespaced objects need their Namespace first, so the two groups are applied by two resources in order.
  rbac_cluster_scoped = {
    for doc in local.rbac_documents : "${doc.kind}/${doc.metadata.name}" => doc
    if try(doc.metadata.namespace, null) == null
  }
  rbac_namespaced = {
    for doc in local.rbac_documents : "${doc.kind}/${doc.metadata.namespace}/${doc.metadata.name}" => doc
    if try(doc.metadata.namespace, null) != null
  }

  # Optional files are read only when their toggle is on.
  capture_manifests = {
    for doc in flatten([
      for path in(var.enable_process_capture ? ["${local.manifests_dir}/rbac-capture.yaml"] : []) : [
        for chunk in split("\n---\n", "\n${templatefile(path, local.template_vars)}\n") : yamldecode(chunk)
      ]
    ]) : "${doc.kind}/${try(doc.metadata.namespace, "")}/${doc.metadata.name}" => doc
    if try(doc.kind, null) != null
  }
  admission_guard_manifests = {
    for doc in flatten([
      for path in(var.enable_admission_guard ? ["${local.manifests_dir}/admission-guard.yaml", "${local.manifests_dir}/identity-guard.yaml"] : []) : [
        for chunk in split("\n---\n", "\n${templatefile(path, local.template_vars)}\n") : yamldecode(chunk)
      ]
    ]) : "${doc.kind}/${try(doc.metadata.namespace, "")}/${doc.metadata.name}" => doc
    if try(doc.kind, null) != null
  }
  cluster_quarantine_manifests = {
    for doc in [
      for path in(var.enable_cluster_quarantine_policy ? ["${local.manifests_dir}/cluster-quarantine.yaml"] : []) :
      yamldecode(templatefile(path, { priority = var.cluster_quarantine_priority }))
    ] : "${doc.kind}//${doc.metadata.name}" => doc
  }
}
