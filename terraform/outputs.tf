output "function_name" {
  description = "Name of the Cloud Function (gen2)."
  value       = google_cloudfunctions2_function.responder.name
}

output "function_uri" {
  description = "URI of the function's Cloud Run service (internal ingress only)."
  value       = google_cloudfunctions2_function.responder.service_config[0].uri
}

output "responder_identity" {
  description = "The function's service-account e-mail, computed from name and project_id and so known at plan time: pass it to modules/cluster-access (responder_identity), whose manifests must be known when planned."
  value       = local.function_sa_email
}

output "function_service_account_email" {
  description = "Identity the responder runs as: the Kubernetes RBAC subject (User) in every cluster it acts on."
  value       = google_service_account.function.email
}

output "trigger_service_account_email" {
  description = "Identity of the findings push subscription's OIDC tokens: the only principal that may invoke the function."
  value       = google_service_account.trigger.email
}

output "findings_subscription" {
  description = "Push subscription delivering findings to the function (retry backoff and dead-letter policy are on it)."
  value       = google_pubsub_subscription.findings.id
}

output "findings_topic" {
  description = "Topic the SCC notification config publishes findings to (projects/P/topics/T); use it with `python -m responder publish-sample --topic`."
  value       = google_pubsub_topic.findings.id
}

output "findings_dead_letter_topic" {
  description = "Topic receiving findings the function failed on max_delivery_attempts times, or null (enable_dead_letter = false)."
  value       = one(google_pubsub_topic.findings_dead_letter[*].id)
}

output "findings_dead_letter_subscription" {
  description = "Subscription holding the dead letters for inspection and replay, or null (enable_dead_letter = false)."
  value       = one(google_pubsub_subscription.findings_dead_letter[*].id)
}

output "replay_environment" {
  description = "The function's RESPONDER_* settings as shell export lines, plus RESPONDER_GOOGLE_APIS=on: source it before `python -m responder replay` of a dead letter (docs/operations.md)."
  value       = local.replay_environment
}

output "report_topic" {
  description = "Topic receiving incident reports (RESPONDER_REPORT_TOPIC)."
  value       = google_pubsub_topic.reports.id
}

output "report_subscription" {
  description = "Owners' pull subscription on the report topic, or null."
  value       = one(google_pubsub_subscription.reports[*].id)
}

output "notification_config_name" {
  description = "Resource name of the SCC v2 notification config: the organization's, or at project scope the first fleet project's (all of them: notification_config_names)."
  value       = try(local.notification_config_names[0], null)
}

output "notification_config_names" {
  description = "Resource names of every SCC v2 notification config: one at organization scope, one per fleet project at project scope."
  value       = local.notification_config_names
}

output "fleet" {
  description = "RESPONDER_FLEET as a list: the clusters this deployment covers (projects/P/locations/L/clusters/C), or [] without clusters (every cluster is handled)."
  value       = sort(keys(local.fleet_clusters))
}

output "fleet_projects" {
  description = "Projects of the fleet: where the function holds its per-project roles and the SCC scope must reach."
  value       = local.fleet_projects
}

output "fleet_clusters" {
  description = "The clusters variable keyed like RESPONDER_FLEET, with dataplane and endpoint, for the caller that instantiates modules/cluster-access once per cluster."
  value       = local.fleet_clusters
}

output "canary_source" {
  description = "RESPONDER_CANARY_SOURCE: the SCC source (organizations/O/sources/S) the canary writes its finding under, or null (no canary)."
  value       = local.canary_source_name
}

output "canary_finding" {
  description = "The canary's finding (created or updated every canary_interval_min minutes), or null (no canary)."
  value       = local.canary_source_name == null ? null : "${local.canary_source_name}/findings/${local.canary_finding_id}"
}

output "notification_filter" {
  description = "Filter of the SCC notification config."
  value       = local.notification_filter
}

output "source_bucket" {
  description = "Bucket holding the function source archives."
  value       = google_storage_bucket.source.name
}

output "rbac_apply_command" {
  description = "Applies deploy/kubernetes/rbac.yaml (and rbac-capture.yaml / admission-guard.yaml + identity-guard.yaml / cluster-quarantine.yaml when their toggles are on) for this deployment's identity to the current kubectl context (run from the repository root, once per cluster)."
  value = join(" && ", [
    for file in local.kubernetes_manifest_files :
    "sed -e 's/$${responder_identity}/${google_service_account.function.email}/' -e 's/$${priority}/${var.cluster_quarantine_priority}/' ${file} | kubectl apply -f -"
  ])
}
