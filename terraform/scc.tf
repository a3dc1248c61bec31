# SCC v2 notification configs: stream the handled, ACTIVE findings of the fleet's projects to the findings topic.
# Organization scope (default): one organization-level config, its filter restricted to the fleet's projects
# (locals.tf, generated_filter). Project scope: one project-level config per fleet project (local.scc_projects), for
# project-level SCC activations. Either way every fleet project is covered: scc_project_id's validation refuses a
# project scope that would leave one out.

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
  for_each = toset(local.scc_projects)

  project      = each.value
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
  notification_config_names = concat(
    google_scc_v2_organization_notification_config.findings[*].name,
    [for config in google_scc_v2_project_notification_config.findings : config.name],
  )
  # SCC publishes as a service account each notification config reports; configs may share one.
  scc_publishers = distinct(concat(
    google_scc_v2_organization_notification_config.findings[*].service_account,
    [for config in google_scc_v2_project_notification_config.findings : config.service_account],
  ))
}

# Authoritative for roles/pubsub.publisher on the findings topic: the service account of every notification config
# above, and no one else; any other member added to the topic's policy for this role (by hand, by another tool, by a
# second deployment's notification config) is removed on the next apply. Principals holding publish through a project,
# folder or organization role (Owner, Editor, Pub/Sub Admin/Editor/Publisher there) are not affected by a topic policy:
# that is why the responder re-reads every finding from SCC before doing anything destructive (README, "What the
# findings topic does and does not guarantee").
resource "google_pubsub_topic_iam_binding" "findings_publishers" {
  project = var.project_id
  topic   = google_pubsub_topic.findings.name
  role    = "roles/pubsub.publisher"
  members = [for sa in local.scc_publishers : "serviceAccount:${sa}"]
}

# An overriding notification_filter replaces the fleet restriction too: say so when it names no cluster resource of a
# fleet project (a finding there would never arrive).
check "notification_filter_covers_the_fleet" {
  assert {
    condition     = length(local.filter_override_misses) == 0
    error_message = "notification_filter names no resource_name under projects/P/ for the fleet project(s) ${join(", ", local.filter_override_misses)}: unless the filter lets their findings through some other way, they never reach the responder."
  }
}
