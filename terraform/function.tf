# The function: source zip -> bucket -> Cloud Functions gen2 (Cloud Build with its own service account). Findings reach
# it through the push subscription in pubsub.tf, not through an Eventarc trigger.

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

# The archive's object name: named by its content hash, so any change of the source (the policy included) is a new
# object, a new build of the function, and a new policy check (validate_policy.tf).
locals {
  source_object = "function-source-${data.archive_file.source.output_sha256}.zip"
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs reproducible from git; reads and writes are covered by Cloud Audit Logs, a usage-log bucket would add a second unlogged bucket.
  #checkov:skip=CKV_GCP_78:Versioning is off on purpose: archives are named by content hash and only the current one is needed (at build time); with versioning every replaced archive would live on as a noncurrent version.
  project  = var.project_id
  name     = local.names.source_bucket
  location = var.region
  labels   = var.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only artifacts reproducible from git live here; `terraform destroy` must not stall on leftover objects.
  force_destroy = true

  # Each source change uploads function-source-<sha256>.zip under a new name, so Terraform replaces the object and
  # deletes the previous archive; without versioning that delete is final. The bucket holds the current archive only
  # (and, for a day, the policy check's staged copies of it).
  versioning {
    enabled = false
  }

  # Noncurrent versions left from a deployment that had versioning on.
  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }

  # The copies of the archive gcloud stages for the policy check (validate_policy.tf): needed only while it runs.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["${local.validate_policy_staging}/"]
    }
    action {
      type = "Delete"
    }
  }

  # A sweep for archives no state tracks (an interrupted apply, another checkout). It may also take the current
  # archive, which is only read at build time: the next apply uploads it again and the function is not rebuilt.
  dynamic "lifecycle_rule" {
    for_each = var.source_max_age_days == null ? [] : [var.source_max_age_days]
    content {
      condition {
        age        = lifecycle_rule.value
        with_state = "ANY"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [time_sleep.services_ready]
}

resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = local.source_object
  source = data.archive_file.source.output_path
}

# --- Service accounts -------------------------------------------------------------------------------------------------

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = local.service_accounts.function
  display_name = "Reverse Shell Responder (function runtime)"
  description  = "Runs the responder: reads clusters, logs and SCC findings, acts on pods through Kubernetes RBAC."

  depends_on = [time_sleep.services_ready]
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = local.service_accounts.trigger
  display_name = "Reverse Shell Responder (findings push)"
  description  = "OIDC identity of the findings push subscription; can only invoke the function."

  depends_on = [time_sleep.services_ready]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = local.service_accounts.build
  display_name = "Reverse Shell Responder (Cloud Build)"
  description  = "Builds the function image, so builds never run as the default compute service account."

  depends_on = [time_sleep.services_ready]
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
    # A push from a Pub/Sub subscription in the same project counts as internal traffic: nothing on the internet
    # reaches the function, and what does reach it must still carry an OIDC token of an identity with run.invoker.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables          = local.responder_env

    # Direct VPC egress (private control-plane endpoints); off unless vpc_network or vpc_subnetwork is set.
    direct_vpc_egress = local.vpc_egress_enabled ? "VPC_EGRESS_${var.vpc_egress}" : null
    dynamic "direct_vpc_network_interface" {
      for_each = local.vpc_egress_enabled ? [1] : []
      content {
        network    = var.vpc_network
        subnetwork = var.vpc_subnetwork
        tags       = var.vpc_network_tags
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.budget_namespace == null || contains(local.rbac_lease_namespaces, coalesce(var.budget_namespace, "-"))
      error_message = "budget_namespace must be a namespace where deploy/kubernetes/rbac.yaml grants the Lease Role (${join(", ", local.rbac_lease_namespaces)})."
    }
  }

  # The build identity's role must have propagated before Cloud Build starts, or the first build fails on a fresh
  # project. And the policy check (validate_policy.tf) must have passed on this very archive: a bad policy fails the
  # apply here, and the running function keeps its previous source.
  depends_on = [time_sleep.build_iam_propagation, terraform_data.validate_policy]
}

# IAM grants take up to a few minutes to be seen everywhere; a build started right after the roles/run.builder grant
# is refused.
resource "time_sleep" "build_iam_propagation" {
  create_duration = "90s"

  triggers = {
    build_role = google_project_iam_member.build.id
  }
}
