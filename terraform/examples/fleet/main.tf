# One deployment for three GKE clusters in two projects (terraform/README.md, "A fleet").
#
# The responder module (../..) gets the fleet in `clusters`: the function's roles in both projects, an SCC filter (or
# one project-level config per project) that covers both, and RESPONDER_FLEET. Each cluster then gets the responder's
# RBAC and admission guard from modules/cluster-access, with a kubernetes provider of its own: Terraform cannot loop
# over providers, so there is one provider block and one module block per cluster. Adding a cluster = one entry in
# local.clusters + one provider block + one module block.

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
  }
}

locals {
  clusters = [
    { project = "shop-prod", location = "europe-west1", name = "shop-eu", dataplane = "v2", endpoint = "dns" },
    { project = "shop-prod", location = "us-central1", name = "shop-us", dataplane = "v2", endpoint = "ip" },
    { project = "payments-prod", location = "europe-west1-b", name = "payments", dataplane = "legacy", endpoint = "dns" },
  ]
}

module "responder" {
  source = "../.."

  project_id      = "secops-responder-prod"
  region          = "europe-west1"
  organization_id = "123456789012"
  clusters        = local.clusters

  mode                  = "dry-run"
  notification_channels = ["projects/secops-responder-prod/notificationChannels/1234567890"]
}

# --- Reaching each cluster's control plane ---------------------------------------------------------------------------

provider "google" {}

data "google_client_config" "current" {}

data "google_container_cluster" "fleet" {
  for_each = module.responder.fleet_clusters

  project  = each.value.project
  location = each.value.location
  name     = each.value.name
}

# endpoint = "dns": the DNS-based endpoint with the OAuth token (publicly trusted certificate, no CA); "ip":
# Cluster.endpoint with the cluster CA (reachable only where that IP is).
locals {
  host = {
    for key, c in data.google_container_cluster.fleet : key => (
      module.responder.fleet_clusters[key].endpoint == "dns"
      ? "https://${c.control_plane_endpoints_config[0].dns_endpoint_config[0].endpoint}"
      : "https://${c.endpoint}"
    )
  }
  ca = {
    for key, c in data.google_container_cluster.fleet : key => (
      module.responder.fleet_clusters[key].endpoint == "dns" ? null : base64decode(c.master_auth[0].cluster_ca_certificate)
    )
  }
}

provider "kubernetes" {
  alias                  = "shop_eu"
  host                   = local.host["projects/shop-prod/locations/europe-west1/clusters/shop-eu"]
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = local.ca["projects/shop-prod/locations/europe-west1/clusters/shop-eu"]
}

provider "kubernetes" {
  alias                  = "shop_us"
  host                   = local.host["projects/shop-prod/locations/us-central1/clusters/shop-us"]
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = local.ca["projects/shop-prod/locations/us-central1/clusters/shop-us"]
}

provider "kubernetes" {
  alias                  = "payments"
  host                   = local.host["projects/payments-prod/locations/europe-west1-b/clusters/payments"]
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = local.ca["projects/payments-prod/locations/europe-west1-b/clusters/payments"]
}

# --- The responder's access, once per cluster --------------------------------------------------------------------------
# responder_identity is known at plan time (computed from name and project_id), so each cluster's manifests are too.

module "access_shop_eu" {
  source    = "../../modules/cluster-access"
  providers = { kubernetes = kubernetes.shop_eu }

  responder_identity = module.responder.responder_identity
}

module "access_shop_us" {
  source    = "../../modules/cluster-access"
  providers = { kubernetes = kubernetes.shop_us }

  responder_identity = module.responder.responder_identity
}

module "access_payments" {
  source    = "../../modules/cluster-access"
  providers = { kubernetes = kubernetes.payments }

  responder_identity = module.responder.responder_identity
}

output "fleet" {
  description = "The clusters the deployment covers (RESPONDER_FLEET)."
  value       = module.responder.fleet
}
