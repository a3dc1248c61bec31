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

  depends_on = [time_sleep.services_ready]
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

  depends_on = [time_sleep.services_ready]
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

# Authoritative for roles/pubsub.publisher on the findings topic: SCC's service account is the only member, and any
# other member added to the topic's policy for this role (by hand, by another tool) is removed on the next apply.
# Principals holding publish through a project, folder or organization role (Owner, Editor, Pub/Sub Admin/Editor/
# Publisher there) are not affected by a topic policy: that is why the responder re-reads every finding from SCC before
# doing anything destructive (README, "What the findings topic does and does not guarantee").
resource "google_pubsub_topic_iam_binding" "findings_publishers" {
  project = var.project_id
  topic   = google_pubsub_topic.findings.name
  role    = "roles/pubsub.publisher"
  members = ["serviceAccount:${local.scc_publisher}"]
}
