# The policy check (validate_policy_in_build): `python -m responder validate-policy` runs in Cloud Build on the archive
# Terraform uploaded, before the function is built from it. Cloud Functions gen2 builds Python with Google's buildpacks,
# which run no step of ours, so the check is a build of its own (build/validate-policy.yaml) that this apply submits
# and waits for. The function depends on it: a bad policy fails the apply, the running function keeps its previous
# source, and nothing waits for the first real finding to find out.
#
# The one command this module runs on the machine that runs Terraform: `gcloud builds submit`, as one argv (no shell;
# locals.tf, validate_policy_argv), as the account gcloud is logged in as. The build runs as <name>-policy, which may
# read the source bucket and write its build log, nothing else: the check installs requirements.txt from the package
# index, so whatever runs in it gets that identity's rights and no more (not <name>-build's, which may push images).

resource "google_service_account" "policy" {
  count = var.validate_policy_in_build ? 1 : 0

  project      = var.project_id
  account_id   = local.service_accounts.policy
  display_name = "Reverse Shell Responder (policy check)"
  description  = "Runs the Cloud Build that validates the policy file of the uploaded function source: may read the source bucket and write its build log."

  depends_on = [time_sleep.services_ready]
}

# The build's source: gcloud stages a copy of the archive under validate-policy/ in this bucket, and Cloud Build reads
# it as the build's service account.
resource "google_storage_bucket_iam_member" "policy_source_reader" {
  count = var.validate_policy_in_build ? 1 : 0

  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.policy[0].email}"
}

# A build with a user-managed service account writes its log to Cloud Logging (options.logging = CLOUD_LOGGING_ONLY).
resource "google_project_iam_member" "policy_log_writer" {
  count = var.validate_policy_in_build ? 1 : 0

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.policy[0].email}"
}

# A build started right after the grants may not see them yet (as for the function's build, function.tf).
resource "time_sleep" "policy_iam_propagation" {
  count = var.validate_policy_in_build ? 1 : 0

  create_duration = "90s"

  triggers = {
    source_reader = google_storage_bucket_iam_member.policy_source_reader[0].id
    log_writer    = google_project_iam_member.policy_log_writer[0].id
  }
}

resource "terraform_data" "validate_policy" {
  count = var.validate_policy_in_build ? 1 : 0

  # Checked again whenever what is checked changes: the archive (named by its hash: any change of the code or the
  # policy), the file the function loads, the Python image, the build config. Not when the checkout moves (the argv's
  # --config is an absolute path) nor for settings validate-policy does not read.
  triggers_replace = {
    source      = local.source_object
    policy_file = local.validate_policy_file
    image       = local.validate_policy_image
    config      = filesha256(local.validate_policy_config)
  }

  # With an interpreter, Terraform runs interpreter + [command] as the process's argv, without a shell. gcloud waits
  # for the build and exits non-zero unless it succeeded; the resource is then tainted, so the next apply checks again.
  provisioner "local-exec" {
    interpreter = slice(local.validate_policy_argv, 0, length(local.validate_policy_argv) - 1)
    command     = local.validate_policy_argv[length(local.validate_policy_argv) - 1]
  }

  lifecycle {
    precondition {
      condition     = contains(local.source_files, local.validate_policy_file)
      error_message = "The policy file ${local.validate_policy_file} is not in the function source: list it in extra_source_files (policy_file names a path relative to the repository root)."
    }
  }

  # The archive is in the bucket, and the build identity's grants have propagated.
  depends_on = [google_storage_bucket_object.source, time_sleep.policy_iam_propagation]
}
