# Inputs of the Reverse Shell Responder deployment.
#
# Sections: where it runs; which SCC findings reach it; the responder's policy toggles (each one becomes a RESPONDER_*
# environment variable; null means "not set", so policy.yaml decides); sizing; delivery and dead-lettering; reports;
# Kubernetes RBAC.

# ---------------------------------------------------------------------------------------------------------------------
# Where it runs
# ---------------------------------------------------------------------------------------------------------------------

variable "project_id" {
  description = "Project that hosts the function, its topics, bucket and service accounts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits, hyphens; starts with a letter), not a project number or display name."
  }
}

variable "region" {
  description = "Region of the function, its Eventarc trigger and the source bucket, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "name" {
  description = "Base name of every resource (function, topics, service accounts '<name>-fn', '<name>-trigger', '<name>-build', '<name>-policy', notification config)."
  type        = string
  default     = "rs-responder"

  validation {
    # 4-20 characters so that '<name>-trigger' still fits the 30-character service-account limit.
    condition     = can(regex("^[a-z][a-z0-9-]{2,18}[a-z0-9]$", var.name))
    error_message = "name must be 4-20 characters: lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them."
  type        = map(string)
  default     = {}
}

variable "clusters" {
  description = <<-EOT
    The fleet: every GKE cluster this deployment covers, each { project, location, name } plus two optional
    attributes. The projects of these clusters get the function's per-project roles (roles/container.clusterViewer,
    roles/logging.viewer), the SCC notification filter (organization scope) or one notification config each (project
    scope), and the list is exported as RESPONDER_FLEET (comma-separated projects/P/locations/L/clusters/C): a finding
    for any other cluster is recorded as outside_fleet at WARNING and nothing is touched. Kubernetes RBAC and the
    admission guard are not applied by this list: instantiate modules/cluster-access once per cluster (see
    examples/fleet). Optional, per cluster, for that caller (output fleet_clusters; this module itself only validates
    them): dataplane = "legacy" or "v2" (GKE Dataplane V2; only a v2 cluster can serve the ClusterNetworkPolicy of
    enable_cluster_quarantine_policy) and endpoint = "ip" or "dns" (how the caller's kubernetes provider reaches the
    control plane, as rbac_cluster_endpoint). The responder reads each cluster's dataplane and endpoints itself
    (netpol_enforcement, gke_endpoint). [] (the default): no RESPONDER_FLEET (every cluster a finding names is
    handled) and the projects come from cluster_projects.
  EOT
  type = list(object({
    project   = string
    location  = string
    name      = string
    dataplane = optional(string)
    endpoint  = optional(string)
  }))
  default  = []
  nullable = false

  validation {
    condition     = alltrue([for c in var.clusters : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", c.project))])
    error_message = "Every cluster's project must be a project ID (not a number or display name)."
  }
  validation {
    # A region (europe-west1) or a zone (europe-west1-b).
    condition     = alltrue([for c in var.clusters : can(regex("^[a-z]+-[a-z]+[0-9]+(-[a-z])?$", c.location))])
    error_message = "Every cluster's location must be a region (europe-west1) or a zone (europe-west1-b)."
  }
  validation {
    condition     = alltrue([for c in var.clusters : can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", c.name))])
    error_message = "Every cluster's name must be a GKE cluster name: 1-40 lowercase letters, digits and hyphens, starting with a letter."
  }
  validation {
    condition     = length(distinct([for c in var.clusters : "${c.project}/${c.location}/${c.name}"])) == length(var.clusters)
    error_message = "clusters lists the same cluster (project, location, name) twice."
  }
  validation {
    condition     = alltrue([for c in var.clusters : c.dataplane == null || contains(["legacy", "v2"], coalesce(c.dataplane, "-"))])
    error_message = "A cluster's dataplane must be \"legacy\", \"v2\" or left out."
  }
  validation {
    condition     = alltrue([for c in var.clusters : c.endpoint == null || contains(["ip", "dns"], coalesce(c.endpoint, "-"))])
    error_message = "A cluster's endpoint must be \"ip\", \"dns\" or left out."
  }
}

variable "cluster_projects" {
  description = "Deprecated: list the clusters in clusters instead, whose projects get the same roles. Projects whose GKE clusters the responder may act on: it gets roles/container.clusterViewer and roles/logging.viewer there, and the SCC scope covers them. Used only when clusters is empty; null (with clusters empty) means [project_id]. Setting both is refused."
  type        = list(string)
  default     = null

  validation {
    condition     = var.cluster_projects == null || alltrue([for p in coalesce(var.cluster_projects, []) : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p))])
    error_message = "Every entry of cluster_projects must be a project ID."
  }
  validation {
    condition     = var.cluster_projects == null || length(coalesce(var.cluster_projects, [])) > 0
    error_message = "cluster_projects must not be empty; use null for the function's own project."
  }
  validation {
    condition     = var.cluster_projects == null || length(var.clusters) == 0
    error_message = "cluster_projects is deprecated and cannot be combined with clusters: the projects of the clusters listed in clusters get the same roles. Remove cluster_projects."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Which findings reach the function
# ---------------------------------------------------------------------------------------------------------------------

variable "scc_scope" {
  description = "Where the SCC v2 notification configs and the responder's SCC roles live: 'organization' (SCC activated at the organization: one organization-level config whose filter is restricted to the fleet's projects) or 'project' (project-level SCC activations: one project-level config, and the SCC finding roles, in every fleet project)."
  type        = string
  default     = "organization"
  nullable    = false

  validation {
    condition     = contains(["organization", "project"], var.scc_scope)
    error_message = "scc_scope must be 'organization' or 'project'."
  }
}

variable "organization_id" {
  description = "Numeric organization ID. Required when scc_scope = 'organization'."
  type        = string
  default     = null

  validation {
    condition     = var.scc_scope != "organization" || can(regex("^[0-9]{1,20}$", var.organization_id))
    error_message = "organization_id must be the numeric organization ID (e.g. 123456789012) when scc_scope = 'organization'."
  }
}

variable "scc_project_id" {
  description = "Deprecated (scc_scope = 'project'): the one project whose project-level SCC activation sends the findings. null (recommended): one project-level notification config, and the SCC finding roles, in every fleet project (the projects of clusters, else cluster_projects, else project_id). When set, every fleet project must be this project: a fleet in two projects with one project-level config would silently never hear from the other, so the plan is refused."
  type        = string
  default     = null

  validation {
    condition     = var.scc_project_id == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.scc_project_id))
    error_message = "scc_project_id must be a project ID."
  }
  validation {
    condition = var.scc_scope != "project" || var.scc_project_id == null || alltrue([
      for p in(length(var.clusters) > 0 ? [for c in var.clusters : c.project] : coalesce(var.cluster_projects, [var.project_id])) :
      p == var.scc_project_id
    ])
    error_message = "With scc_scope = \"project\", scc_project_id covers that one project only, but a cluster of the fleet (clusters, or cluster_projects, or project_id) is in another project: its findings would never arrive. Set scc_project_id = null for one notification config per fleet project, or use scc_scope = \"organization\"."
  }
}

variable "notification_filter" {
  description = "Override of the SCC notification filter. null builds one from categories and the fleet's projects: (category = \"...\" OR ...) AND state = \"ACTIVE\" AND (resource_name : \"//container.googleapis.com/projects/P/\" OR ...). An override replaces all of it, fleet restriction included (a check warns at plan time when it names no resource_name of a fleet project); with enable_canary it must still let the canary's finding through."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------------------------------
# Policy toggles: RESPONDER_* environment variables (see responder/config.py). null = not set = policy.yaml decides.
# ---------------------------------------------------------------------------------------------------------------------

variable "mode" {
  description = "RESPONDER_MODE. 'dry-run' plans and reports without writing anything; 'enforce' contains pods. Flip this one variable to go live."
  type        = string
  default     = "dry-run"
  nullable    = false

  validation {
    condition     = contains(["dry-run", "enforce"], var.mode)
    error_message = "mode must be 'dry-run' or 'enforce'."
  }
}

variable "action" {
  description = "RESPONDER_ACTION: overrides every policy rule's containment with 'isolate', 'delete' or 'none'. null lets the policy file decide."
  type        = string
  default     = null

  validation {
    condition     = var.action == null || contains(["isolate", "delete", "none"], coalesce(var.action, "-"))
    error_message = "action must be 'isolate', 'delete', 'none' or null."
  }
}

variable "categories" {
  description = "RESPONDER_CATEGORIES and the SCC notification filter: finding categories to handle, each with a profile in the responder (Reverse Shell, Added Binary Executed)."
  type        = list(string)
  default     = ["Reverse Shell"]
  nullable    = false

  validation {
    condition     = length(var.categories) > 0
    error_message = "categories must contain at least one category."
  }
  validation {
    # Commas would split the CSV environment variable; quotes and backslashes would break the SCC filter string.
    condition     = alltrue([for c in var.categories : can(regex("^[^,\"\\\\]+$", c)) && trimspace(c) == c])
    error_message = "Each category must be non-empty, without commas, quotes, backslashes or surrounding spaces."
  }
}

variable "protected_namespaces" {
  description = "Namespace globs added to the protected floor (kube-system, kube-public, kube-node-lease, gke-*, gke-managed-*, gmp-*, config-management-system, config-management-*, resource-group-system, responder-system), which can never be removed. The function receives floor + these in RESPONDER_PROTECTED_NAMESPACES, which overrides the policy file's list: protect extra namespaces here."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    # A DNS-1123 label, with '*' as the only glob character: no empty entries, spaces, commas or other characters.
    condition     = alltrue([for n in var.protected_namespaces : can(regex("^[a-z0-9*-]{1,63}$", n))])
    error_message = "Each protected namespace must be 1-63 characters of lowercase letters, digits, '-' and '*' (a namespace name or glob such as \"istio-*\")."
  }
}

variable "exempt_label" {
  description = "RESPONDER_EXEMPT_LABEL: namespaces carrying this label key (value 'true') are never touched. null lets the policy file decide."
  type        = string
  default     = null

  validation {
    condition     = var.exempt_label == null || can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", var.exempt_label))
    error_message = "exempt_label must be a valid Kubernetes label key, e.g. security.example.com/responder-exempt."
  }
}

variable "verify_finding" {
  description = "RESPONDER_VERIFY_FINDING: re-read the finding from SCC before destructive actions (anti-spoofing). null lets the policy file decide."
  type        = bool
  default     = null
}

variable "write_marks" {
  description = "RESPONDER_WRITE_MARKS: record what was done as SCC security marks. Always exported (never null) because it also decides the roles/securitycenter.findingSecurityMarksWriter grant."
  type        = bool
  default     = true
  nullable    = false
}

variable "set_inactive" {
  description = "RESPONDER_SET_INACTIVE: set the finding INACTIVE after a successful delete. Always exported (never null) because it also decides the roles/securitycenter.findingsStateSetter grant."
  type        = bool
  default     = false
  nullable    = false
}

variable "budget_max" {
  description = "RESPONDER_BUDGET_MAX: destructive actions allowed per cluster per window (0 disables destructive actions). null lets the policy file decide."
  type        = number
  default     = null

  validation {
    condition     = var.budget_max == null || (try(var.budget_max >= 0, false) && try(floor(var.budget_max) == var.budget_max, false))
    error_message = "budget_max must be a whole number >= 0, or null."
  }
}

variable "budget_window_s" {
  description = "RESPONDER_BUDGET_WINDOW_S: blast-radius window in seconds. null lets the policy file decide."
  type        = number
  default     = null

  validation {
    condition     = var.budget_window_s == null || (try(var.budget_window_s >= 60, false) && try(floor(var.budget_window_s) == var.budget_window_s, false))
    error_message = "budget_window_s must be a whole number of seconds >= 60, or null."
  }
}

variable "log_window_min" {
  description = "RESPONDER_LOG_WINDOW_MIN: minutes of logs searched around the finding's eventTime (1-1440). null lets the policy file decide."
  type        = number
  default     = null

  validation {
    condition     = var.log_window_min == null || (try(var.log_window_min >= 1 && var.log_window_min <= 1440, false) && try(floor(var.log_window_min) == var.log_window_min, false))
    error_message = "log_window_min must be a whole number between 1 and 1440, or null."
  }
}

variable "policy_file" {
  description = "RESPONDER_POLICY_FILE: policy YAML path relative to the function source root (default policy.yaml beside main.py). A file other than policy.yaml must also be listed in extra_source_files. null: the default."
  type        = string
  default     = null

  validation {
    condition     = var.policy_file == null || can(regex("^[A-Za-z0-9_][A-Za-z0-9_./-]*\\.ya?ml$", var.policy_file)) && !strcontains(coalesce(var.policy_file, "-"), "..")
    error_message = "policy_file must be a relative .yaml/.yml path inside the source (no leading '/', no '..')."
  }
}

variable "budget_namespace" {
  description = "RESPONDER_BUDGET_NAMESPACE: namespace holding the blast-radius budget Leases. Must be the namespace of the Lease Role in deploy/kubernetes/rbac.yaml. null: the responder's default (responder-system)."
  type        = string
  default     = null

  validation {
    condition     = var.budget_namespace == null || can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.budget_namespace))
    error_message = "budget_namespace must be a Kubernetes namespace name."
  }
}

variable "enrichment_timeout_s" {
  description = "RESPONDER_ENRICHMENT_TIMEOUT_S: one deadline, in seconds, shared by every investigation branch (0 < t <= 300). null: the responder's default (20)."
  type        = number
  default     = null

  validation {
    condition     = var.enrichment_timeout_s == null || try(var.enrichment_timeout_s > 0 && var.enrichment_timeout_s <= 300, false)
    error_message = "enrichment_timeout_s must be > 0 and <= 300 seconds, or null."
  }
}

variable "identity" {
  description = "RESPONDER_IDENTITY: what is done about a quarantined pod's service account beyond refusing its token's writes (always done where the identity guard is installed): report (what it can read and write goes in the report) or revoke (a revoke step in every plan that quarantines a pod: the RoleBindings and ClusterRoleBindings naming only that account are recorded, then deleted, so a stolen token's reads are refused too; release recreates them; refused where pods that are not quarantined may share the account). null lets the policy file decide (policy.yaml: report)."
  type        = string
  default     = null

  validation {
    condition     = var.identity == null || contains(["report", "revoke"], coalesce(var.identity, "-"))
    error_message = "identity must be report, revoke or null."
  }
}

variable "live_session" {
  description = "RESPONDER_LIVE_SESSION: what happens when isolation cannot cut an established reverse shell (netpol_enforcement resolves to new-only or none, or a hostNetwork pod): escalate (capture, then delete the pod; the replacement comes from its controller) or report (the pod stays isolated for new connections; the record says at WARNING that the session may be alive). null lets the policy file decide (policy.yaml: escalate)."
  type        = string
  default     = null

  validation {
    condition     = var.live_session == null || contains(["escalate", "report"], coalesce(var.live_session, "-"))
    error_message = "live_session must be escalate, report or null."
  }
}

variable "netpol_enforcement" {
  description = "RESPONDER_NETPOL_ENFORCEMENT: what the clusters' NetworkPolicy dataplane does to connections that already exist when the pod is isolated. auto reads it per GKE cluster (Dataplane V2 / ADVANCED_DATAPATH: established; Calico network policy: new-only; neither: none). established | new-only | none state it for every cluster. Where isolation cannot cut a live session, the policy file's live_session (escalate | report) decides."
  type        = string
  default     = "auto"
  nullable    = false

  validation {
    condition     = contains(["auto", "established", "new-only", "none"], var.netpol_enforcement)
    error_message = "netpol_enforcement must be auto, established, new-only or none."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Function sizing
# ---------------------------------------------------------------------------------------------------------------------

variable "runtime" {
  description = "Cloud Functions Python runtime. The tests and CI run Python 3.11, hence the default."
  type        = string
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312"], var.runtime)
    error_message = "runtime must be python311 or python312."
  }
}

variable "memory" {
  description = "Memory per instance. The imports alone need ~115 MiB; evidence capture and the Kubernetes client need headroom."
  type        = string
  default     = "512Mi"

  validation {
    condition     = contains(["256Mi", "512Mi", "1Gi", "2Gi", "4Gi", "8Gi"], var.memory)
    error_message = "memory must be one of 256Mi, 512Mi, 1Gi, 2Gi, 4Gi, 8Gi."
  }
}

variable "cpu" {
  description = "vCPUs per instance (e.g. \"1\"). null: derived from memory, or \"1\" when max_instance_request_concurrency > 1 (Cloud Functions requires a full vCPU for concurrency)."
  type        = string
  default     = null

  validation {
    condition     = var.cpu == null || can(regex("^(0\\.[0-9]+|[1-8])$", var.cpu))
    error_message = "cpu must be a fraction below 1 (e.g. \"0.583\") or a whole number 1-8."
  }
}

variable "timeout_s" {
  description = "Function timeout in seconds (event-driven gen2 functions allow at most 540). Also bounds how long one delivery attempt may take."
  type        = number
  default     = 120

  validation {
    condition     = var.timeout_s >= 10 && var.timeout_s <= 540 && floor(var.timeout_s) == var.timeout_s
    error_message = "timeout_s must be a whole number between 10 and 540."
  }
}

variable "max_instances" {
  description = "Maximum concurrent instances; caps the API load a finding storm can cause."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number between 1 and 1000."
  }
}

variable "min_instances" {
  description = "Instances kept warm (0 = scale to zero; 1 removes the cold start at a small standing cost)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 100 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number between 0 and 100."
  }
}

variable "max_instance_request_concurrency" {
  description = "Events one instance handles at once. 1 keeps each finding isolated in its own instance."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instance_request_concurrency >= 1 && var.max_instance_request_concurrency <= 1000 && floor(var.max_instance_request_concurrency) == var.max_instance_request_concurrency
    error_message = "max_instance_request_concurrency must be a whole number between 1 and 1000."
  }
}

variable "source_max_age_days" {
  description = "Age after which any object in the source bucket is deleted by a lifecycle rule: a sweep for archives no Terraform state tracks any more (an interrupted apply, another checkout). Terraform itself deletes the previous archive whenever the source changes. The current archive is only read when the function is built; if the rule removes it, the next apply uploads it again without rebuilding the function. null: no sweep."
  type        = number
  default     = 30
  nullable    = true

  validation {
    condition     = var.source_max_age_days == null || try(var.source_max_age_days >= 1 && floor(var.source_max_age_days) == var.source_max_age_days, false)
    error_message = "source_max_age_days must be a whole number of days >= 1, or null."
  }
}

variable "extra_source_files" {
  description = "Extra files (paths relative to the repository root) added to the function source, e.g. an alternative policy file named by policy_file."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for f in var.extra_source_files : !startswith(f, "/") && !strcontains(f, "..")])
    error_message = "extra_source_files must be relative paths inside the repository (no leading '/', no '..')."
  }
}

variable "validate_policy_in_build" {
  description = "Check the policy before the function is built: Terraform submits terraform/build/validate-policy.yaml to Cloud Build, which runs `python -m responder validate-policy` on the uploaded archive (policy_file, else policy.yaml) as the service account <name>-policy (it may read the source bucket and write its build log). A bad policy fails the apply, and the running function keeps its previous source. Needs the gcloud CLI on PATH of the machine running Terraform, logged in as an identity that may start builds in project_id (roles/cloudbuild.builds.editor), act as <name>-policy and write to the source bucket (see the deployer's roles in terraform/README.md), and the Cloud Build API, which this module enables. false: no check, no gcloud, no <name>-policy."
  type        = bool
  default     = true
  nullable    = false
}

# ---------------------------------------------------------------------------------------------------------------------
# Delivery: the push subscription's retry policy and dead-lettering
# ---------------------------------------------------------------------------------------------------------------------

variable "enable_dead_letter" {
  description = "Move findings the function failed on max_delivery_attempts times to a dead-letter topic (kept in its own subscription for dead_letter_retention). false: no dead-letter topic or subscription is created, and a failing finding is retried until the push subscription's 7-day retention expires. Switching it from true to false destroys the dead-letter topic and subscription on that apply, with every dead letter still waiting in it (Pub/Sub deletes a subscription's messages with it): pull and replay them first (docs/operations.md), and check the findings_dead_letter_subscription is empty before applying."
  type        = bool
  default     = true
  nullable    = false
}

variable "max_delivery_attempts" {
  description = "Delivery attempts before a finding is moved to the dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number between 5 and 100."
  }
}

variable "retry_min_backoff_s" {
  description = "Minimum delay before Pub/Sub redelivers a failed event (0-600 seconds)."
  type        = number
  default     = 10

  validation {
    condition     = var.retry_min_backoff_s >= 0 && var.retry_min_backoff_s <= 600 && floor(var.retry_min_backoff_s) == var.retry_min_backoff_s
    error_message = "retry_min_backoff_s must be a whole number between 0 and 600."
  }
}

variable "retry_max_backoff_s" {
  description = "Maximum delay before Pub/Sub redelivers a failed event (0-600 seconds, >= retry_min_backoff_s)."
  type        = number
  default     = 600

  validation {
    condition     = var.retry_max_backoff_s >= var.retry_min_backoff_s && var.retry_max_backoff_s <= 600 && floor(var.retry_max_backoff_s) == var.retry_max_backoff_s
    error_message = "retry_max_backoff_s must be a whole number between retry_min_backoff_s and 600."
  }
}

variable "dead_letter_retention" {
  description = "How long undeliverable findings stay in the dead-letter subscription for inspection and replay (Pub/Sub allows up to 7 days)."
  type        = string
  default     = "604800s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.dead_letter_retention)) && try(tonumber(trimsuffix(var.dead_letter_retention, "s")) >= 600 && tonumber(trimsuffix(var.dead_letter_retention, "s")) <= 604800, false)
    error_message = "dead_letter_retention must be a duration in seconds such as \"604800s\", between 600s and 604800s."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Network: Direct VPC egress and the clusters' control-plane endpoint
# ---------------------------------------------------------------------------------------------------------------------

variable "vpc_network" {
  description = "VPC network for Direct VPC egress of the function (name, or projects/HOST/global/networks/NAME for Shared VPC). Needed to reach a private control-plane endpoint. null (and vpc_subnetwork null): no VPC egress."
  type        = string
  default     = null
}

variable "vpc_subnetwork" {
  description = "Subnetwork (in var.region) the function's instances take their addresses from (name, or projects/HOST/regions/REGION/subnetworks/NAME). Its primary range is what the clusters' authorized networks must allow. null: the subnetwork named like vpc_network."
  type        = string
  default     = null
}

variable "vpc_egress" {
  description = "Which traffic leaves through the VPC when vpc_network/vpc_subnetwork is set: PRIVATE_RANGES_ONLY (RFC 1918 destinations, e.g. private control-plane endpoints; Google APIs go out directly) or ALL_TRAFFIC (everything, including Google APIs: the subnet then needs Private Google Access or Cloud NAT)."
  type        = string
  default     = "PRIVATE_RANGES_ONLY"
  nullable    = false

  validation {
    condition     = contains(["PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"], var.vpc_egress)
    error_message = "vpc_egress must be PRIVATE_RANGES_ONLY or ALL_TRAFFIC."
  }
}

variable "vpc_network_tags" {
  description = "Network tags on the function's Direct VPC interface, for firewall rules."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "gke_endpoint" {
  description = "RESPONDER_GKE_ENDPOINT: which control-plane endpoint the responder uses. auto: the cluster's DNS-based endpoint when it accepts traffic from outside the VPC, else its public IP endpoint, else its private IP endpoint (reachable only with Direct VPC egress). dns | private | public force one (private needs vpc_network or vpc_subnetwork)."
  type        = string
  default     = "auto"
  nullable    = false

  validation {
    condition     = contains(["auto", "dns", "private", "public"], var.gke_endpoint)
    error_message = "gke_endpoint must be auto, dns, private or public."
  }
  validation {
    condition     = var.gke_endpoint != "private" || var.vpc_network != null || var.vpc_subnetwork != null
    error_message = "gke_endpoint = \"private\" needs Direct VPC egress: set vpc_network and/or vpc_subnetwork."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------------

variable "create_report_subscription" {
  description = "Create a pull subscription on the report topic for the owners (security team, ticketing bridge)."
  type        = bool
  default     = true
  nullable    = false
}

variable "report_subscriber_members" {
  description = "Principals allowed to read the report subscription, e.g. [\"group:secops@example.com\"]."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for m in var.report_subscriber_members : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+", m))])
    error_message = "report_subscriber_members entries must be IAM principals such as group:secops@example.com (allUsers/allAuthenticatedUsers are refused)."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes RBAC (deploy/kubernetes/rbac.yaml)
# ---------------------------------------------------------------------------------------------------------------------

variable "manage_kubernetes_rbac" {
  description = "Apply deploy/kubernetes/rbac.yaml (rendered for the function's service account) to rbac_cluster with the kubernetes provider. false: apply it yourself, see the rbac_apply_command output."
  type        = bool
  default     = false
  nullable    = false
}

variable "rbac_cluster" {
  description = "GKE cluster that receives the RBAC when manage_kubernetes_rbac = true. One cluster per Terraform run: for more clusters use the rbac_apply_command output per cluster. Keep it set for the apply that turns manage_kubernetes_rbac off: the kubernetes provider needs it to delete the objects."
  type = object({
    project  = string
    location = string
    name     = string
  })
  default = null

  validation {
    condition     = !var.manage_kubernetes_rbac || var.rbac_cluster != null
    error_message = "rbac_cluster is required when manage_kubernetes_rbac = true."
  }
}

variable "rbac_cluster_endpoint" {
  description = "How the kubernetes provider reaches rbac_cluster: ip (Cluster.endpoint with the cluster CA: the public IP, or the private IP of a private-endpoint cluster, reachable only from inside its VPC) or dns (the DNS-based endpoint with an OAuth token: works from anywhere IAM allows, also for clusters with only a private endpoint or with IP endpoints off; needs the DNS endpoint enabled with external traffic allowed, and container.clusters.connect)."
  type        = string
  default     = "ip"
  nullable    = false

  validation {
    condition     = contains(["ip", "dns"], var.rbac_cluster_endpoint)
    error_message = "rbac_cluster_endpoint must be ip or dns."
  }
}

variable "enable_process_capture" {
  description = "Let the responder run `ps axjf` and `cat /proc/net/tcp /proc/net/tcp6` in a compromised container (kubectl exec). true applies deploy/kubernetes/rbac-capture.yaml (the exec ClusterRole) when manage_kubernetes_rbac is on; false leaves exec out and exports RESPONDER_PROCESS_CAPTURE=false so the responder does not try."
  type        = bool
  default     = false
  nullable    = false
}

variable "enable_admission_guard" {
  description = "Apply deploy/kubernetes/admission-guard.yaml (the guard: the cluster refuses what the responder must never do) and deploy/kubernetes/identity-guard.yaml (the identity quarantine: a quarantined pod's service-account token may not write), each a ValidatingAdmissionPolicy + binding, when manage_kubernetes_rbac is on. Needs GKE 1.30+."
  type        = bool
  default     = true
  nullable    = false
}

variable "enable_cluster_quarantine_policy" {
  description = "Apply deploy/kubernetes/cluster-quarantine.yaml when manage_kubernetes_rbac is on: one static Admin-tier ClusterNetworkPolicy that denies all ingress and egress of pods carrying the quarantine label, so that no Admin-tier Accept at a worse priority reopens a quarantined pod. The responder only reads it (it never writes a cluster-scoped object). Needs a cluster that serves ClusterNetworkPolicy (GKE Dataplane V2 from 1.36.0-gke.4447000, a Preview feature with an alpha CRD, hence opt-in); the kubernetes provider needs the CRD at plan time. Inert until a pod carries the label."
  type        = bool
  default     = false
  nullable    = false
}

variable "cluster_quarantine_priority" {
  description = "The static ClusterNetworkPolicy's priority within the Admin tier (0-1000, lower wins). Keep it better (lower) than every Admin-tier Accept you run: the responder counts an Admin Accept that selects a quarantined pod at an equal or better priority as reopening it, and runs the live-session rule (escalate to delete, or not_contained)."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.cluster_quarantine_priority >= 0 && var.cluster_quarantine_priority <= 1000 && floor(var.cluster_quarantine_priority) == var.cluster_quarantine_priority
    error_message = "cluster_quarantine_priority must be a whole number from 0 to 1000 (ClusterNetworkPolicy's range)."
  }
}

# ---------------------------------------------------------------------------------------------------------------------
# Operations: log-based metrics, alert policies, dashboard (monitoring.tf)
# ---------------------------------------------------------------------------------------------------------------------

variable "enable_monitoring" {
  description = "Create the log-based metrics on the decision records, the alert policies (a failed or retried decision, a dead letter, a finding left unanswered) and the dashboard. On by default: a failure must reach a person."
  type        = bool
  default     = true
  nullable    = false
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) every alert policy notifies. An empty list still creates the policies: incidents open in the console, nobody is paged until a channel is added."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+$", c))])
    error_message = "notification_channels entries must be notification channel names: projects/PROJECT_ID/notificationChannels/NUMBER."
  }
}

variable "unanswered_after_min" {
  description = "Minutes after which a finding still unacknowledged on the push subscription (no final decision: the function failed, was never reached, or keeps retrying) opens an incident. A healthy finding is acknowledged within seconds."
  type        = number
  default     = 15
  nullable    = false

  validation {
    condition     = var.unanswered_after_min >= 2 && var.unanswered_after_min <= 1440 && floor(var.unanswered_after_min) == var.unanswered_after_min
    error_message = "unanswered_after_min must be a whole number of minutes between 2 and 1440."
  }
}

variable "enable_outside_fleet_alert" {
  description = "A low-urgency alert policy (severity WARNING, at most one notification an hour) on every outside_fleet record: a finding for a cluster not in clusters, recorded and not acted on; a real shell in a cluster someone forgot to list. Needs enable_monitoring."
  type        = bool
  default     = true
  nullable    = false
}

# ---------------------------------------------------------------------------------------------------------------------
# Canary (canary.tf): a finding that proves SCC -> filter -> topic -> function on a schedule
# ---------------------------------------------------------------------------------------------------------------------

variable "enable_canary" {
  description = "Every canary_interval_min minutes a Cloud Scheduler job starts a Cloud Workflows workflow that creates or updates one finding (category = the first of categories, ACTIVE, a fresh eventTime, resource = the first cluster of the fleet) under an SCC source this deployment owns, exported as RESPONDER_CANARY_SOURCE. SCC publishes it through the notification config and the publisher binding like any finding; the responder recognises the source (after SCC vouches for it), records code canary at INFO and touches nothing. With enable_monitoring, an alert opens when no canary record was seen for 3 intervals. Needs organization_id (SCC sources exist only under an organization; at project scope, the organization of the projects): without it nothing is created and a check warns at plan time. Without clusters, the finding names a cluster <name>-canary in the first fleet project. terraform destroy cannot delete the source (SCC has no delete for sources): it stays, with its last canary finding."
  type        = bool
  default     = true
  nullable    = false
}

variable "canary_interval_min" {
  description = "Minutes between two canary findings: 5, 10, 15, 20 or 30 (every N minutes of each hour), or 60, 120, 180, 240 or 360 (every N/60 hours, on the hour, UTC). The canary alert opens after 3 intervals without a canary record."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = contains([5, 10, 15, 20, 30, 60, 120, 180, 240, 360], var.canary_interval_min)
    error_message = "canary_interval_min must be one of 5, 10, 15, 20, 30, 60, 120, 180, 240, 360."
  }
}
