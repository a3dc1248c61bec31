# The function: source zip -> bucket -> Cloud Functions gen2 (Cloud Build with its own service account) -> Eventarc
# trigger on the findings topic.

# --- Source -----------------------------------------------------------------------------------------------------------

# Built at plan time from the allow-list in locals.tf (main.py, requirements.txt, policy.yaml, responder/**). The
# object name carries the hash, so any source change uploads a new object and redeploys the function. file() reads
# UTF-8 text, which is all the function ships (Python and YAML); a binary file would fail the plan, not slip in.
data "archive_file" "source" {
  type             = "zip"
  output_path      = "${path.module}/.terraform/build/function-source.zip"
  output_file_mode = "0644"

  dynamic "source" {
    for_each = toset(local.source_files)
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs reproducible from git; reads and writes are covered by Cloud Audit Logs, a usage-log bucket would add a second unlogged bucket.
  project  = var.project_id
  name     = local.names.source_bucket
  location = var.region
  labels   = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only artifacts reproducible from git live here; `terraform destroy` must not stall on old object versions.
  force_destroy = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "function-source-${data.archive_file.source.output_sha256}.zip"
  source = data.archive_file.source.output_path
}

# --- Service accounts -------------------------------------------------------------------------------------------------

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = local.service_accounts.function
  display_name = "Reverse Shell Responder (function runtime)"
  description  = "Runs the responder: reads clusters, logs and SCC findings, acts on pods through Kubernetes RBAC."
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = local.service_accounts.trigger
  display_name = "Reverse Shell Responder (Eventarc trigger)"
  description  = "Identity Eventarc uses to deliver findings to the function; can only invoke it."
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = local.service_accounts.build
  display_name = "Reverse Shell Responder (Cloud Build)"
  description  = "Builds the function image, so builds never run as the default compute service account."
}

# --- Function ---------------------------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "responder" {
  project     = var.project_id
  location    = var.region
  name        = local.names.function
  description = "Reverse Shell Responder: contains GKE pods named by SCC Container Threat Detection Reverse Shell findings (mode: ${var.mode})."
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = "handle_finding"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function.email
    available_memory                 = var.memory
    available_cpu                    = local.function_cpu
    timeout_seconds                  = var.timeout_s
    max_instance_count               = var.max_instances
    min_instance_count               = var.min_instances
    max_instance_request_concurrency = var.max_instance_request_concurrency
    # Eventarc's push counts as internal traffic: nothing on the internet can reach the function.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.responder_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.findings.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email
  }

  lifecycle {
    precondition {
      condition     = var.budget_namespace == null || contains(local.rbac_lease_namespaces, coalesce(var.budget_namespace, "-"))
      error_message = "budget_namespace must be a namespace where deploy/kubernetes/rbac.yaml grants the Lease Role (${join(", ", local.rbac_lease_namespaces)})."
    }
  }

  depends_on = [
    google_project_iam_member.build,
    google_project_iam_member.trigger_event_receiver,
  ]
}


# --- Dead-lettering and retry backoff on the Eventarc subscription ------------------------------------------------------
# Eventarc creates and owns the push subscription behind the trigger, and the google provider exposes no argument for
# its dead-letter or retry policy (hashicorp/terraform-provider-google#17697, #25069). This step sets both with gcloud
# after every change of the function (a redeploy may recreate the trigger and its subscription), and lets the Pub/Sub
# service agent acknowledge on it, which dead-lettering requires.
resource "terraform_data" "findings_dead_letter_policy" {
  count = var.attach_dead_letter_policy ? 1 : 0

  triggers_replace = [
    google_cloudfunctions2_function.responder.event_trigger[0].trigger,
    google_cloudfunctions2_function.responder.update_time,
    google_pubsub_topic.findings_dead_letter.id,
    var.max_delivery_attempts,
    var.retry_min_backoff_s,
    var.retry_max_backoff_s,
  ]

  provisioner "local-exec" {
    interpreter = ["/bin/bash", "-c"]
    environment = {
      TRIGGER           = google_cloudfunctions2_function.responder.event_trigger[0].trigger
      DEAD_LETTER_TOPIC = google_pubsub_topic.findings_dead_letter.id
      PUBSUB_AGENT      = local.pubsub_service_agent
      MAX_ATTEMPTS      = tostring(var.max_delivery_attempts)
      MIN_BACKOFF       = "${var.retry_min_backoff_s}s"
      MAX_BACKOFF       = "${var.retry_max_backoff_s}s"
    }
    command = <<-EOT
      set -euo pipefail
      command -v gcloud >/dev/null || { echo "gcloud is required to attach the dead-letter policy (or set attach_dead_letter_policy = false)" >&2; exit 1; }
      IFS=/ read -r _ project _ location _ trigger <<< "$TRIGGER"
      sub="$(gcloud eventarc triggers describe "$trigger" --project="$project" --location="$location" --format='value(transport.pubsub.subscription)')"
      [ -n "$sub" ] || { echo "Eventarc trigger $TRIGGER has no Pub/Sub subscription" >&2; exit 1; }
      gcloud pubsub subscriptions add-iam-policy-binding "$sub" --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber --quiet >/dev/null
      gcloud pubsub subscriptions update "$sub" --dead-letter-topic="$DEAD_LETTER_TOPIC" --max-delivery-attempts="$MAX_ATTEMPTS" --min-retry-delay="$MIN_BACKOFF" --max-retry-delay="$MAX_BACKOFF" --quiet
      echo "dead-letter policy attached to $sub"
    EOT
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}
