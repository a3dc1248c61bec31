# SCC v2 notification config: streams the handled, ACTIVE findings to the findings topic. Organization-level by
# default; project-level for projects with a project-level SCC activation (scc_scope = "project").

resource "google_scc_v2_organization_notification_config" "findings" {
  count = var.scc_scope == "organization" ? 1 : 0

  organization = var.organization_id
  location     = "global"
  config_id    = local.names.notification
  description  = "Reverse Shell Responder: GKE Container Threat Detection findings to ${local.names.findings_topic}"
  pubsub_topic = google_pubsub_topic.findings.id

  streaming_config {
    filter = local.notification_filter
  }
}

resource "google_scc_v2_project_notification_config" "findings" {
  count = var.scc_scope == "project" ? 1 : 0

  project      = local.scc_project_id
  location     = "global"
  config_id    = local.names.notification
  description  = "Reverse Shell Responder: GKE Container Threat Detection findings to ${local.names.findings_topic}"
  pubsub_topic = google_pubsub_topic.findings.id

  streaming_config {
    filter = local.notification_filter
  }
}

locals {
  notification_config_name = one(concat(
    google_scc_v2_organization_notification_config.findings[*].name,
    google_scc_v2_project_notification_config.findings[*].name,
  ))
  # SCC publishes as its own service account, reported by the notification config itself.
  scc_publisher = one(concat(
    google_scc_v2_organization_notification_config.findings[*].service_account,
    google_scc_v2_project_notification_config.findings[*].service_account,
  ))
}

resource "google_pubsub_topic_iam_member" "scc_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.findings.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.scc_publisher}"
}
