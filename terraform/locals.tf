# Pure derivations from variables and repository files: no resource or data-source references, so every value here is
# known at plan time (for_each keys, the identity in the RBAC) and the offline tests can evaluate this file on its own.
# Two exceptions, to which the tests give stand-ins: RESPONDER_CANARY_SOURCE takes local.canary_source_name from
# canary.tf (the SCC source's name, known after apply), and the policy check's command names the uploaded archive,
# local.source_object from function.tf (named by the archive's hash).

locals {
  repo_root = abspath("${path.module}/..")

  names = {
    function          = var.name
    findings_topic    = "${var.name}-findings"
    findings_sub      = "${var.name}-findings-push"
    dead_letter_topic = "${var.name}-findings-dead-letter"
    dead_letter_sub   = "${var.name}-findings-dead-letter"
    reports_topic     = "${var.name}-reports"
    reports_sub       = "${var.name}-reports"
    source_bucket     = "${var.project_id}-${var.name}-source"
    notification      = var.name
    canary            = "${var.name}-canary"
  }

  # Service-account e-mails are computed here rather than read from the resources so that the identity handed to
  # modules/cluster-access (and with it the manifests and their for_each keys) is known at plan time.
  service_accounts = {
    function = "${var.name}-fn"
    trigger  = "${var.name}-trigger" # the push subscription's OIDC identity
    build    = "${var.name}-build"
    policy   = "${var.name}-policy" # runs the policy check build (validate_policy.tf)
  }
  function_sa_email = "${local.service_accounts.function}@${var.project_id}.iam.gserviceaccount.com"
  policy_sa_email   = "${local.service_accounts.policy}@${var.project_id}.iam.gserviceaccount.com"

  # --- The fleet ---------------------------------------------------------------------------------------------------
  # Keyed by the name the responder compares a finding's cluster with (RESPONDER_FLEET).
  fleet_clusters = {
    for c in var.clusters : "projects/${c.project}/locations/${c.location}/clusters/${c.name}" => c
  }
  # The projects of the fleet: those of clusters, else the deprecated cluster_projects, else the function's own.
  fleet_projects = sort(distinct(
    length(var.clusters) > 0 ? [for c in var.clusters : c.project] :
    var.cluster_projects != null ? var.cluster_projects : [var.project_id]
  ))
  cluster_projects = toset(local.fleet_projects)
  # Project scope: one project-level notification config, and the SCC finding roles, per fleet project (or the one
  # deprecated scc_project_id, which a variable validation holds to cover every fleet project).
  scc_projects    = var.scc_scope != "project" ? [] : (var.scc_project_id != null ? [var.scc_project_id] : local.fleet_projects)
  report_topic_id = "projects/${var.project_id}/topics/${local.names.reports_topic}"

  # --- APIs enabled in project_id (apis.tf) ---------------------------------------------------------------------
  # The function's own calls (SCC, Logging, GKE) are charged to the project of its service account, so the APIs it
  # calls in other projects only need to be enabled here. Eventarc is not used: findings are pushed by a Pub/Sub
  # subscription this module owns (pubsub.tf).
  vpc_egress_enabled = var.vpc_network != null || var.vpc_subnetwork != null
  required_services = toset(concat(
    [
      "serviceusage.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "iam.googleapis.com",
      "storage.googleapis.com",
      "pubsub.googleapis.com",
      "cloudfunctions.googleapis.com",
      "run.googleapis.com",
      "cloudbuild.googleapis.com",
      "artifactregistry.googleapis.com",
      "securitycenter.googleapis.com",
      "logging.googleapis.com",
      "container.googleapis.com",
      "monitoring.googleapis.com",
    ],
    # Direct VPC egress reads the network and subnetwork through the Compute Engine API.
    local.vpc_egress_enabled ? ["compute.googleapis.com"] : [],
    # The canary: a Cloud Scheduler job starts a Cloud Workflows execution (canary.tf).
    local.canary_enabled ? ["cloudscheduler.googleapis.com", "workflows.googleapis.com", "workflowexecutions.googleapis.com"] : [],
  ))

  # --- Protected namespaces: a floor the variable can only add to -------------------------------------------------
  # The responder enforces the same floor itself; Terraform exports floor + extras so that the deployed value is
  # visible in one place and never shorter than the floor.
  protected_namespaces_floor = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "gke-*",
    "gke-managed-*",
    "gmp-*",
    "config-management-system",
    "config-management-*",
    "resource-group-system",
    "responder-system",
  ]
  protected_namespaces = distinct(concat(local.protected_namespaces_floor, var.protected_namespaces))

  # --- SCC notification filter -----------------------------------------------------------------------------------
  # The exact category string of CTD findings is documented as "Reverse Shell"; module names use REVERSE_SHELL. Both
  # spellings are matched (the responder normalises categories the same way), state must be ACTIVE.
  # Restricted to the fleet's projects by the finding's resource_name (a finding field every notification filter
  # supports; `:` is a substring match): CTD names the cluster //container.googleapis.com/projects/PROJECT_ID/... The
  # trailing slash keeps project "shop" from matching "shop-prod". SCC gives OR precedence over AND: every group is
  # parenthesised.
  filter_categories   = distinct(flatten([for c in var.categories : [c, upper(replace(c, " ", "_"))]]))
  filter_fleet_terms  = [for p in local.fleet_projects : "resource_name : \"//container.googleapis.com/projects/${p}/\""]
  generated_filter    = "(${join(" OR ", [for c in local.filter_categories : "category = \"${c}\""])}) AND state = \"ACTIVE\" AND (${join(" OR ", local.filter_fleet_terms)})"
  notification_filter = coalesce(var.notification_filter, local.generated_filter)
  # Fleet projects an overriding notification_filter does not name (a check in scc.tf warns about them).
  filter_override_misses = var.notification_filter == null ? [] : [
    for p in local.fleet_projects : p if !strcontains(var.notification_filter, "projects/${p}/")
  ]

  # --- Canary (canary.tf) -------------------------------------------------------------------------------------------
  # SCC sources exist only under an organization; the canary's finding names the first cluster of the fleet (so that
  # it passes the fleet filter), or, with only cluster_projects, a cluster name in the first fleet project.
  canary_enabled  = var.enable_canary && var.organization_id != null
  canary_resource = length(var.clusters) > 0 ? "//container.googleapis.com/${keys(local.fleet_clusters)[0]}" : "//container.googleapis.com/projects/${local.fleet_projects[0]}/locations/${var.region}/clusters/${var.name}-canary"
  canary_schedule = var.canary_interval_min < 60 ? "*/${var.canary_interval_min} * * * *" : "0 */${floor(var.canary_interval_min / 60)} * * *"
  # The alert waits 3 intervals for a canary record (the alert's duration: at most 18 h with the longest interval).
  canary_absent_after_s = var.canary_interval_min * 60 * 3

  # --- Function environment: the responder's policy toggles ------------------------------------------------------
  # One entry per operator setting in responder/config.py. A null value means "not set": it is dropped below so the
  # policy file decides. Wiring-only settings (endpoints, anonymous credentials, kubeconfig) are for local tests and
  # are deliberately absent.
  responder_env_candidates = {
    RESPONDER_MODE                 = var.mode
    RESPONDER_ACTION               = var.action
    RESPONDER_CATEGORIES           = join(",", var.categories)
    RESPONDER_PROTECTED_NAMESPACES = join(",", local.protected_namespaces)
    RESPONDER_EXEMPT_LABEL         = var.exempt_label
    RESPONDER_VERIFY_FINDING       = var.verify_finding == null ? null : tostring(var.verify_finding)
    RESPONDER_WRITE_MARKS          = tostring(var.write_marks)
    RESPONDER_SET_INACTIVE         = tostring(var.set_inactive)
    RESPONDER_REPORT_TOPIC         = local.report_topic_id
    RESPONDER_BUDGET_MAX           = var.budget_max == null ? null : tostring(var.budget_max)
    RESPONDER_BUDGET_WINDOW_S      = var.budget_window_s == null ? null : tostring(var.budget_window_s)
    RESPONDER_LOG_WINDOW_MIN       = var.log_window_min == null ? null : tostring(var.log_window_min)
    RESPONDER_POLICY_FILE          = var.policy_file
    RESPONDER_BUDGET_NAMESPACE     = var.budget_namespace
    RESPONDER_ENRICHMENT_TIMEOUT_S = var.enrichment_timeout_s == null ? null : tostring(var.enrichment_timeout_s)
    # Which control-plane endpoint to use: auto | dns | private | public (see README, "Private clusters").
    RESPONDER_GKE_ENDPOINT = var.gke_endpoint
    # Always exported: it follows the separate exec ClusterRole (rbac-capture.yaml), so the responder never plans a
    # `kubectl exec` its identity is not allowed to make.
    RESPONDER_PROCESS_CAPTURE = tostring(var.enable_process_capture)
    # What the NetworkPolicy dataplane does to established connections: auto | established | new-only | none; and
    # what to do when isolation cannot cut a live session: escalate | report (null: the policy file decides).
    RESPONDER_NETPOL_ENFORCEMENT = var.netpol_enforcement
    RESPONDER_LIVE_SESSION       = var.live_session
    # The quarantined pod's service account: report | revoke (null: the policy file decides).
    RESPONDER_IDENTITY = var.identity
    # The clusters this deployment covers (null without clusters: every cluster is handled); a finding for any other
    # is recorded outside_fleet and not touched.
    RESPONDER_FLEET = length(var.clusters) > 0 ? join(",", sort(keys(local.fleet_clusters))) : null
    # The SCC source the canary's findings are written under (canary.tf; null without the canary).
    RESPONDER_CANARY_SOURCE = local.canary_source_name
  }
  responder_env = { for k, v in local.responder_env_candidates : k => v if v != null }

  # The same settings for replaying a dead letter from a shell (docs/operations.md, the replay_environment output):
  # one `export` line per setting, each value single-quoted with every ' written as '\'' (so nothing in it is expanded),
  # plus RESPONDER_GOOGLE_APIS=on (its default, auto, is off outside Cloud Functions: no SCC check, nothing destructive).
  # A setting the function leaves unset is unset here too, so a value left in the operator's shell cannot override
  # the policy file. Built from responder_env_candidates and responder_env, so it cannot drift from the function's.
  replay_environment = join("\n", concat(
    ["# ${var.name}: the function's settings for `python -m responder replay` (docs/operations.md)"],
    [for k, v in merge(local.responder_env, { RESPONDER_GOOGLE_APIS = "on" }) : "export ${k}='${replace(v, "'", "'\\''")}'"],
    [for k, v in local.responder_env_candidates : "unset ${k}" if v == null],
    [""],
  ))

  # --- Function source -------------------------------------------------------------------------------------------
  # An allow-list, not the repository minus exclusions: tests, tooling, virtualenvs and .git never reach the build.
  source_files = sort(distinct(concat(
    ["main.py", "requirements.txt", "policy.yaml"],
    [for f in fileset(local.repo_root, "responder/**") : f if !strcontains(f, "__pycache__") && !endswith(f, ".pyc")],
    var.extra_source_files,
  )))

  # --- The policy check (validate_policy.tf, build/validate-policy.yaml) --------------------------------------------
  # `python -m responder validate-policy` in Cloud Build on the uploaded archive, before the function is (re)built: the
  # file the function will load (RESPONDER_POLICY_FILE, else policy.yaml beside main.py), with the Python of the
  # runtime. One argv, no shell: Terraform's local-exec runs it with the list as interpreter + command. The source
  # is staged under validate-policy/ of the source bucket (gcloud copies a gs:// source before building it), where a
  # lifecycle rule removes the copies after a day.
  validate_policy_file    = coalesce(var.policy_file, "policy.yaml")
  validate_policy_config  = "${abspath(path.module)}/build/validate-policy.yaml"
  validate_policy_image   = "python:${substr(var.runtime, 6, 1)}.${substr(var.runtime, 7, -1)}-slim"
  validate_policy_staging = "validate-policy"
  validate_policy_argv = [
    "gcloud", "builds", "submit",
    "gs://${local.names.source_bucket}/${local.source_object}",
    "--config=${local.validate_policy_config}",
    "--project=${var.project_id}",
    "--region=${var.region}",
    "--service-account=projects/${var.project_id}/serviceAccounts/${local.policy_sa_email}",
    "--gcs-source-staging-dir=gs://${local.names.source_bucket}/${local.validate_policy_staging}",
    "--substitutions=_POLICY_FILE=${local.validate_policy_file},_PYTHON_IMAGE=${local.validate_policy_image}",
    "--quiet",
  ]

  # --- Kubernetes RBAC -------------------------------------------------------------------------------------------
  # The objects are rendered and applied by modules/cluster-access (kubernetes.tf for rbac_cluster, or the caller's own
  # module blocks for a fleet); deploy/kubernetes/ is their single source of truth. The root reads rbac.yaml only to
  # know where the budget Leases may live (the function's budget_namespace precondition).
  rbac_manifest_path = "${path.module}/../deploy/kubernetes/rbac.yaml"
  rbac_documents = [
    for doc in [for chunk in split("\n---\n", "\n${templatefile(local.rbac_manifest_path, { responder_identity = local.function_sa_email })}\n") : yamldecode(chunk)] :
    doc if try(doc.kind, null) != null
  ]
  # The files applied by hand when Terraform does not manage the RBAC (the rbac_apply_command output).
  kubernetes_manifest_files = concat(
    ["deploy/kubernetes/rbac.yaml"],
    var.enable_process_capture ? ["deploy/kubernetes/rbac-capture.yaml"] : [],
    var.enable_admission_guard ? ["deploy/kubernetes/admission-guard.yaml", "deploy/kubernetes/identity-guard.yaml"] : [],
    var.enable_cluster_quarantine_policy ? ["deploy/kubernetes/cluster-quarantine.yaml"] : [],
  )

  # The budget Leases live where rbac.yaml grants access to them.
  rbac_lease_namespaces = distinct([
    for doc in local.rbac_documents : doc.metadata.namespace
    if doc.kind == "Role" && anytrue([for rule in try(doc.rules, []) : contains(try(rule.resources, []), "leases")])
  ])

  # --- IAM role lists of the function's service account (granted in iam.tf) -----------------------------------------
  function_cluster_roles = ["roles/container.clusterViewer", "roles/logging.viewer"]
  function_scc_roles = concat(
    ["roles/securitycenter.findingsViewer"],
    var.write_marks ? ["roles/securitycenter.findingSecurityMarksWriter"] : [],
    var.set_inactive ? ["roles/securitycenter.findingsStateSetter"] : [],
  )
  # Project scope: each SCC role in each project with a project-level notification config (local.scc_projects).
  function_scc_project_grants = {
    for pair in setproduct(local.scc_projects, local.function_scc_roles) : "${pair[0]} ${pair[1]}" => {
      project = pair[0]
      role    = pair[1]
    }
  }
  function_cluster_grants = {
    for pair in setproduct(local.cluster_projects, local.function_cluster_roles) : "${pair[0]} ${pair[1]}" => {
      project = pair[0]
      role    = pair[1]
    }
  }

  # --- Operations: what the log-based metrics and the alerts match (monitoring.tf) ---------------------------------
  # Cloud Run (hence Cloud Functions gen2) turns each JSON line on stdout into a LogEntry: `severity` becomes the
  # entry's severity, every other field of the decision record lands in jsonPayload. tests/terraform/test_monitoring.py
  # runs these filters through the Logging wire fake's evaluator against records the responder really writes.
  function_logs      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.names.function}\""
  decision_filter    = "${local.function_logs} AND logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\" AND jsonPayload.verdict:* AND jsonPayload.outcome:*"
  containment_filter = "${local.decision_filter} AND jsonPayload.contained_ms>0"
  # Pages: a decision that asks for redelivery (outcome retry: a failed containment, a crash) or any entry of the
  # function at ERROR or above (a rejected or forged message, a configuration error, a traceback), except a
  # not_contained decision: it is written at ERROR too, but pages through its own alert below, once.
  # `NOT field="v"` also holds for an entry without that field (a traceback, a request log), as in Cloud Logging.
  failure_filter = "${local.function_logs} AND ((severity>=ERROR AND NOT jsonPayload.outcome=\"not_contained\") OR jsonPayload.outcome=\"retry\")"
  # Pages: a terminal decision that left an attacker possibly connected (outcome not_contained: an escalation refused
  # by a guard or the budget, a 403, a vouched shell the policy leaves alone, dry-run, live_session report). It is
  # acknowledged, so nothing retries it: a person must act.
  not_contained_filter = "${local.decision_filter} AND jsonPayload.outcome=\"not_contained\""
  # The canary's own record: SCC vouched for a finding under the deployment's canary source, nothing was touched. Only
  # this shape proves the path; a canary that failed (retry) or was rejected does not.
  canary_filter = "${local.decision_filter} AND jsonPayload.code=\"canary\" AND jsonPayload.verdict=\"ignore\" AND jsonPayload.outcome=\"done\""
  # Low urgency: a finding for a cluster this deployment does not cover, recorded and not acted on.
  outside_fleet_filter = "${local.decision_filter} AND jsonPayload.code=\"outside_fleet\""
  metric_names = {
    decisions           = "${var.name}-decisions"
    time_to_containment = "${var.name}-time-to-containment"
    canary              = "${var.name}-canary"
  }

  # --- Sizing -------------------------------------------------------------------------------------------------------
  # Concurrency above 1 requires at least one full vCPU.
  function_cpu = var.cpu != null ? var.cpu : (var.max_instance_request_concurrency > 1 ? "1" : null)
}
