# Provider pins. Cross-variable validation (org id required at organization scope, RBAC target required when Terraform
# manages RBAC) needs Terraform 1.9+. Nothing here needs google-beta: the SCC v2 notification configs and Cloud
# Functions gen2 are GA in the google provider.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.0.0, < 9.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.31.0, < 4.0.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # Organization-level SCC and IAM calls made with user credentials need a quota project.
  billing_project       = var.project_id
  user_project_override = true
}

# Only used when manage_kubernetes_rbac = true; otherwise every argument is null and the provider is never contacted
# (no kubernetes_manifest instance exists).
provider "kubernetes" {
  host                   = local.rbac_cluster_host
  token                  = local.rbac_cluster_token
  cluster_ca_certificate = local.rbac_cluster_ca
}
