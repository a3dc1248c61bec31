# Provider pins: `~>` on the major version each provider block below is written against, and for google on the first
# release with every argument used here: `direct_vpc_network_interface` and `direct_vpc_egress` of
# google_cloudfunctions2_function exist only from 7.21.0 (absent in 7.0.0 to 7.20.0, where `terraform validate` fails
# even with VPC egress off). Cross-variable validation (org id required at organization scope, RBAC target required
# when Terraform manages RBAC) needs Terraform 1.9+.
# Nothing here needs google-beta: SCC v2 notification configs, Cloud Functions gen2 with Direct VPC egress and Pub/Sub
# push subscriptions with OIDC are GA in the google provider.
#
# No .terraform.lock.hcl is committed: it records provider checksums that `terraform init` can only compute by
# downloading the providers, and this repository is checked offline. The first `terraform init` writes it; commit it
# in your deployment repository.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.21"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }
}

# Every call is charged to project_id (X-Goog-User-Project). Organization-level calls (the SCC notification config,
# organization IAM) carry no project of their own, and with user credentials they are refused without a quota
# project; this makes `terraform apply` work the same for a person and for a CI service account. The price: every API
# this provider calls must be enabled in project_id first, so every resource using it depends on
# time_sleep.services_ready (apis.tf), and nothing is read through it at plan time on a fresh project.
provider "google" {
  project = var.project_id
  region  = var.region

  billing_project       = var.project_id
  user_project_override = true
}

# The same credentials without the quota-project override, for the few calls that must work before project_id has
# any API enabled: enabling the APIs themselves (Service Usage), and the data sources read at plan time (the project
# number from Resource Manager, the RBAC cluster's endpoint from GKE). Those calls are charged to the caller's own
# project, as gcloud does by default.
provider "google" {
  alias = "bootstrap"

  project               = var.project_id
  region                = var.region
  user_project_override = false
}

# Configured whenever rbac_cluster is set, whether or not manage_kubernetes_rbac is on, so that switching the toggle
# off still leaves the provider a cluster to delete the RBAC objects from (kubernetes.tf). With rbac_cluster_endpoint
# = "dns" the CA is null: the DNS-based endpoint presents a publicly trusted certificate.
provider "kubernetes" {
  host                   = local.rbac_cluster_host
  token                  = local.rbac_cluster_token
  cluster_ca_certificate = local.rbac_cluster_ca
}
