# Least-privilege IAM. No primitive role (owner/editor/viewer) is granted anywhere; tests/terraform checks both that and
# the exact role set of the function's service account.
#
# Function service account:
#   fleet projects   : roles/container.clusterViewer (cluster endpoint + CA, i.e. "get-credentials"; what it may do
#                      inside the cluster is decided by deploy/kubernetes/rbac.yaml), roles/logging.viewer (pod,
#                      audit and serial-console log excerpts)
#   SCC              : roles/securitycenter.findingsViewer (verify the finding), + findingSecurityMarksWriter when
#                      write_marks, + findingsStateSetter only when set_inactive; at the organization, or (project
#                      scope) in each project with a notification config
#   report topic     : roles/pubsub.publisher on that topic only
#   Direct VPC egress: roles/run.invoker on the function's own Cloud Run service, only when vpc_network or
#                      vpc_subnetwork is set (the Cloud Run functions Direct VPC page asks for it to authorize egress)
# Push service account (<name>-trigger): roles/run.invoker on the function's Cloud Run service only.
# Pub/Sub service agent : roles/iam.serviceAccountTokenCreator on the push service account only (to sign its OIDC
#                         tokens); publisher on the dead-letter topic and subscriber on the findings subscription
#                         (pubsub.tf), only when dead-lettering is on.
# SCC service accounts  : the only publishers on the findings topic (authoritative binding, scc.tf): one per
#                         notification config.
# Canary (canary.tf)    : <name>-canary may edit findings under the canary's SCC source only; <name>-cron may only
#                         start workflow executions (roles/workflows.invoker, which Workflows grants per project).
# Build service account : roles/run.builder (the role made for building functions from source).
# Policy check (<name>-policy, validate_policy.tf): roles/storage.objectViewer on the source bucket and
#                         roles/logging.logWriter (its build log), only when validate_policy_in_build.
#
# The role lists are local.function_cluster_roles and local.function_scc_roles (locals.tf).

# --- Function ---------------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "function_cluster" {
  for_each = local.function_cluster_grants

  project = each.value.project
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_organization_iam_member" "function_scc" {
  for_each = var.scc_scope == "organization" ? toset(local.function_scc_roles) : toset([])

  org_id = var.organization_id
  role   = each.value
  member = "serviceAccount:${google_service_account.function.email}"
}

# Project scope: in every project with a project-level notification config (local.scc_projects).
resource "google_project_iam_member" "function_scc" {
  for_each = var.scc_scope == "project" ? local.function_scc_project_grants : {}

  project = each.value.project
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.function.email}"
}

resource "google_pubsub_topic_iam_member" "function_reports" {
  project = var.project_id
  topic   = google_pubsub_topic.reports.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.function.email}"
}

# Direct VPC egress is authorized by roles/run.invoker held by the function's service account. Granted on the
# function's own service only: that is all it may invoke.
resource "google_cloud_run_v2_service_iam_member" "function_vpc_egress_invoker" {
  count = local.vpc_egress_enabled ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.responder.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.function.email}"
}

# --- Findings push -----------------------------------------------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.responder.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# Pub/Sub signs the push requests' OIDC tokens as the push identity. Projects created since April 2021 let the Pub/Sub
# service agent do this already; the grant, on this one service account, makes older projects work the same.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"
}

# --- Cloud Build ------------------------------------------------------------------------------------------------------

resource "google_project_iam_member" "build" {
  project = var.project_id
  role    = "roles/run.builder"
  member  = "serviceAccount:${google_service_account.build.email}"
}
