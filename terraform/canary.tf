# The canary (enable_canary): proof that the whole path works, before a real shell needs it. Every canary_interval_min
# minutes Cloud Scheduler starts a Cloud Workflows execution that creates or updates one finding under an SCC source
# this deployment owns (workflows/canary.yaml): category = the first of categories, ACTIVE, resource = the first cluster
# of the fleet, a fresh eventTime. SCC streams it through the notification config (filter included) and publishes it
# as its own service account (the publisher binding included); the push subscription delivers it; the responder sees
# the source in RESPONDER_CANARY_SOURCE, has SCC vouch for it, records code canary at INFO and touches nothing. With
# enable_monitoring, an alert opens when no such record was seen for 3 intervals (monitoring.tf).
#
# Identities, each with one grant:
#   <name>-canary: roles/securitycenter.findingsEditor on the canary source only (source-level IAM): it may write
#                  findings there and nowhere else. The workflow runs as it.
#   <name>-cron  : roles/workflows.invoker, to start the workflow. Workflows roles can only be granted on a project, so
#                  it may start any workflow of project_id (each runs as its own service account; it can neither read
#                  nor change one): keep project_id free of other workflows.
#
# Not deleted by terraform destroy: the SCC source (the SCC API has no delete for sources) and its last finding.

locals {
  canary_finding_id  = "rsrcanary" # alphanumeric, at most 32 characters (SCC finding IDs)
  canary_source_name = one(google_scc_source.canary[*].name)
}

resource "google_scc_source" "canary" {
  count = local.canary_enabled ? 1 : 0

  organization = var.organization_id
  display_name = "${var.name} canary"
  description  = "Reverse Shell Responder ${var.name}: a canary finding written every ${var.canary_interval_min} min to prove SCC -> ${local.names.findings_topic} -> ${local.names.function}. Not a threat."

  depends_on = [time_sleep.services_ready]
}

resource "google_service_account" "canary" {
  count = local.canary_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-canary"
  display_name = "Reverse Shell Responder (canary writer)"
  description  = "Runs the canary workflow: may create and update findings under the deployment's canary SCC source only."

  depends_on = [time_sleep.services_ready]
}

resource "google_service_account" "canary_cron" {
  count = local.canary_enabled ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name}-cron"
  display_name = "Reverse Shell Responder (canary schedule)"
  description  = "Cloud Scheduler's identity for the canary: may only start workflow executions."

  depends_on = [time_sleep.services_ready]
}

# Source-level IAM: findings under this source, nothing else in SCC.
resource "google_scc_source_iam_member" "canary_writer" {
  count = local.canary_enabled ? 1 : 0

  organization = var.organization_id
  source       = google_scc_source.canary[0].name
  role         = "roles/securitycenter.findingsEditor"
  member       = "serviceAccount:${google_service_account.canary[0].email}"
}

resource "google_project_iam_member" "canary_cron_invoker" {
  count = local.canary_enabled ? 1 : 0

  project = var.project_id
  role    = "roles/workflows.invoker"
  member  = "serviceAccount:${google_service_account.canary_cron[0].email}"
}

resource "google_workflows_workflow" "canary" {
  count = local.canary_enabled ? 1 : 0

  project             = var.project_id
  region              = var.region
  name                = local.names.canary
  description         = "Reverse Shell Responder canary: creates or updates ${local.canary_source_name}/findings/${local.canary_finding_id} with a fresh eventTime."
  service_account     = google_service_account.canary[0].id
  call_log_level      = "LOG_ERRORS_ONLY"
  deletion_protection = false
  labels              = var.labels

  source_contents = templatefile("${path.module}/workflows/canary.yaml", {
    finding     = "${google_scc_source.canary[0].name}/findings/${local.canary_finding_id}"
    category    = var.categories[0]
    resource    = local.canary_resource
    deployment  = var.name
    description = "Canary of the Reverse Shell Responder ${var.name}: proves that SCC findings reach ${local.names.function}. Not a threat; the responder records it and touches nothing."
  })

  # The first run must be able to write.
  depends_on = [google_scc_source_iam_member.canary_writer]
}

resource "google_cloud_scheduler_job" "canary" {
  count = local.canary_enabled ? 1 : 0

  project          = var.project_id
  region           = var.region
  name             = local.names.canary
  description      = "Starts the canary workflow ${local.names.canary} every ${var.canary_interval_min} min (UTC)."
  schedule         = local.canary_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://workflowexecutions.googleapis.com/v1/${google_workflows_workflow.canary[0].id}/executions"
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    oauth_token {
      service_account_email = google_service_account.canary_cron[0].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_iam_member.canary_cron_invoker]
}

# Without an organization there is no SCC source to write under, hence no canary: nothing proves the path.
check "canary_has_an_organization" {
  assert {
    condition     = !var.enable_canary || local.canary_enabled
    error_message = "enable_canary is on but organization_id is not set: SCC sources exist only under an organization, so no canary is created and nothing proves that findings reach the responder. Set organization_id (the organization of the SCC activation) or enable_canary = false."
  }
}
