# No provider block: the caller passes a kubernetes provider configured for one cluster (providers = { kubernetes =
# kubernetes.CLUSTER }), so the module can be instantiated once per cluster of the fleet.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
  }
}
