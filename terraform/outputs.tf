output "function_name" {
  description = "Name of the Cloud Function (gen2)."
  value       = google_cloudfunctions2_function.responder.name
}

output "function_uri" {
  description = "URI of the function's Cloud Run service (internal ingress only)."
  value       = google_cloudfunctions2_function.responder.service_config[0].uri
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
  description = "Resource name of the SCC v2 notification config."
  value       = local.notification_config_name
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
