# Topics: findings (SCC -> push subscription -> function), their dead letters, and incident reports (function ->
# owners).

# Read through the bootstrap provider (no quota-project override, see versions.tf): the project number is needed at plan
# time, before this module has enabled any API in project_id.
data "google_project" "this" {
  provider = google.bootstrap

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

  depends_on = [time_sleep.services_ready]
}

# --- Delivery: a push subscription this module owns ------------------------------------------------------------------
# Pub/Sub pushes each finding to the function's URL with an OIDC token of the push identity (<name>-trigger), which may
# only invoke the function (iam.tf). The function accepts a Pub/Sub push body as well as a CloudEvent. Retry backoff
# and dead-lettering are arguments of this subscription, so no step outside Terraform is needed: an Eventarc trigger
# would own its subscription, which the google provider cannot configure.
resource "google_pubsub_subscription" "findings" {
  project = var.project_id
  name    = local.names.findings_sub
  topic   = google_pubsub_topic.findings.id
  labels  = var.labels

  # For a push subscription this is how long Pub/Sub waits for the function's answer: as long as the function may run,
  # so that a slow but successful delivery is not sent a second time.
  ack_deadline_seconds       = var.timeout_s
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  push_config {
    push_endpoint = google_cloudfunctions2_function.responder.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.trigger.email
      audience              = google_cloudfunctions2_function.responder.service_config[0].uri
    }
  }

  # Failed deliveries (HTTP 5xx: the function raised for a transient error) come back with exponential backoff.
  retry_policy {
    minimum_backoff = "${var.retry_min_backoff_s}s"
    maximum_backoff = "${var.retry_max_backoff_s}s"
  }

  dynamic "dead_letter_policy" {
    for_each = var.enable_dead_letter ? [1] : []
    content {
      dead_letter_topic     = google_pubsub_topic.findings_dead_letter[0].id
      max_delivery_attempts = var.max_delivery_attempts
    }
  }

  expiration_policy {
    ttl = "" # never expire, even without a finding for a month
  }

  depends_on = [
    # Deliveries before these exist would be refused (401/403) and only retried.
    google_cloud_run_v2_service_iam_member.trigger_invoker,
    google_service_account_iam_member.pubsub_agent_token_creator,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# --- Dead letters (enable_dead_letter) -------------------------------------------------------------------------------

# Findings the function failed on max_delivery_attempts times land here instead of being retried until they expire.
resource "google_pubsub_topic" "findings_dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the findings topic (SCC metadata); Google-managed encryption, see the findings topic.
  count = var.enable_dead_letter ? 1 : 0

  project = var.project_id
  name    = local.names.dead_letter_topic
  labels  = var.labels

  depends_on = [time_sleep.services_ready]
}

# A topic without a subscription drops what it receives: this one keeps dead letters for inspection and replay.
resource "google_pubsub_subscription" "findings_dead_letter" {
  count = var.enable_dead_letter ? 1 : 0

  project                    = var.project_id
  name                       = local.names.dead_letter_sub
  topic                      = google_pubsub_topic.findings_dead_letter[0].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expire, even when nobody reads it for a month
  }
}

# Pub/Sub forwards dead letters as its own service agent: it must publish to the dead-letter topic and acknowledge the
# forwarded message on the source subscription. Both grants are on those two resources only.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count = var.enable_dead_letter ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.findings_dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count = var.enable_dead_letter ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.findings.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# --- Reports ------------------------------------------------------------------------------------------------------------

resource "google_pubsub_topic" "reports" {
  #checkov:skip=CKV_GCP_83:Incident reports carry finding metadata and pod names only (no secrets, no workload data); Google-managed encryption.
  project = var.project_id
  name    = local.names.reports_topic
  labels  = var.labels

  depends_on = [time_sleep.services_ready]
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
