# The APIs this module uses in project_id, enabled by Terraform so that `terraform init` + `terraform apply` is enough
# on a fresh project. Enabled through the bootstrap provider (no quota-project override, see versions.tf): the override
# would charge the Service Usage call to project_id, whose Service Usage API may not be on yet.
#
# disable_on_destroy = false: other workloads in the project may use the same APIs; `terraform destroy` of the
# responder must never switch them off.

resource "google_project_service" "enabled" {
  provider = google.bootstrap
  for_each = local.required_services

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}

# An API answers "not enabled" for a short while after it was enabled. Every resource that calls an API depends on
# this (directly, or through a resource it references): tests/terraform checks that none is left out.
# Replaced (and so waited for again) whenever the set of APIs changes, e.g. when Direct VPC egress or the canary is
# turned on later: the resources that need the new API wait for it as they did on the first apply.
resource "time_sleep" "services_ready" {
  create_duration = "60s"

  triggers = {
    services = join(",", sort(local.required_services))
  }

  depends_on = [google_project_service.enabled]
}
