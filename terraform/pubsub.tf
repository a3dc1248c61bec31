# Topics: findings (SCC -> Eventarc -> function), their dead letters, and incident reports (function -> owners).

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "findings" {
  #checkov:skip=CKV_GCP_83:Findings are SCC metadata already held by SCC under Google-managed encryption; a customer-managed key would need an org key ring this module does not own. Set kms_key_name here if your org mandates CMEK.
  project = var.project_id
  name    = local.names.findings_topic
  labels  = var.labels

  # Keeps a week of findings on the topic so a subscription can be seeked back and replay them after an outage.
  message_retention_duration = "604800s"
}

# Findings the function failed on max_delivery_attempts times land here instead of being retried until they expire.
resource "google_pubsub_topic" "findings_dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the findings topic (SCC metadata); Google-managed encryption, see the findings topic.
  project = var.project_id
  name    = local.names.dead_letter_topic
  labels  = var.labels
}

# A topic without a subscription drops what it receives: this one keeps dead letters for inspection and replay.
resource "google_pubsub_subscription" "findings_dead_letter" {
  project                    = var.project_id
  name                       = local.names.dead_letter_sub
  topic                      = google_pubsub_topic.findings_dead_letter.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expire, even when nobody reads it for a month
  }
}

# Pub/Sub forwards dead letters as its own service agent: it must be able to publish to the dead-letter topic (and to
# acknowledge on the source subscription, granted where that subscription is configured, see function.tf).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.findings_dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"
}

resource "google_pubsub_topic" "reports" {
  #checkov:skip=CKV_GCP_83:Incident reports carry finding metadata and pod names only (no secrets, no workload data); Google-managed encryption.
  project = var.project_id
  name    = local.names.reports_topic
  labels  = var.labels
}

# For the owners: a pull subscription they (or a ticketing bridge) read.
resource "google_pubsub_subscription" "reports" {
  count = var.create_report_subscription ? 1 : 0

  project                    = var.project_id
  name                       = local.names.reports_sub
  topic                      = google_pubsub_topic.reports.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription_iam_member" "report_readers" {
  for_each = var.create_report_subscription ? toset(var.report_subscriber_members) : toset([])

  project      = var.project_id
  subscription = google_pubsub_subscription.reports[0].name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}
