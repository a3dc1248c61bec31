# Operations: what the responder did, and a page when it failed. Log-based metrics on the decision records (one per
# delivery, see responder/report/record.py), the alert policies and a dashboard, all behind enable_monitoring. The
# filters are pure strings in locals.tf; tests/terraform/test_monitoring.py matches them against real records.
#
# The alert policies read only built-in metrics or the logs themselves, except the canary's: a metric's absence can
# only be watched on a metric. A policy on a user metric created in the same apply is refused until the metric has
# propagated, so that one waits (time_sleep.canary_metric_propagation).

locals {
  alert_documentation = "Runbook: docs/operations.md in the responder's repository (what each alert means, how to replay a dead letter with the function's settings and when to acknowledge it)."
}

# --- Log-based metrics ------------------------------------------------------------------------------------------------

# One point per decision record, labelled with what was decided: the dashboard's "decisions by verdict and code".
resource "google_logging_metric" "decisions" {
  count = var.enable_monitoring ? 1 : 0

  project     = var.project_id
  name        = local.metric_names.decisions
  description = "Decision records of ${local.names.function}: one per delivery, by verdict, code, outcome and severity."
  filter      = local.decision_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Responder decisions"

    labels {
      key         = "verdict"
      value_type  = "STRING"
      description = "act | ignore | reject"
    }
    labels {
      key         = "code"
      value_type  = "STRING"
      description = "Why: reverse_shell, duplicate, protected, bad_finding, suspected_forgery, ..."
    }
    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "done | retry (Pub/Sub redelivers) | not_contained (a person must act)"
    }
    labels {
      key         = "severity"
      value_type  = "STRING"
      description = "INFO | NOTICE | WARNING | ERROR"
    }
  }

  label_extractors = {
    verdict  = "EXTRACT(jsonPayload.verdict)"
    code     = "EXTRACT(jsonPayload.code)"
    outcome  = "EXTRACT(jsonPayload.outcome)"
    severity = "EXTRACT(severity)"
  }

  depends_on = [time_sleep.services_ready]
}

# Receipt to the first containing write the cluster accepted (the record's contained_ms), for deliveries that
# contained a pod. Buckets from 10 ms, x1.5 each: 10 ms .. ~40 min.
resource "google_logging_metric" "time_to_containment" {
  count = var.enable_monitoring ? 1 : 0

  project         = var.project_id
  name            = local.metric_names.time_to_containment
  description     = "Time from receipt to the first containing write (isolate or delete) accepted by the cluster."
  filter          = local.containment_filter
  value_extractor = "EXTRACT(jsonPayload.contained_ms)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "Responder time to containment"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 1.5
      scale              = 10
    }
  }

  depends_on = [time_sleep.services_ready]
}

# --- Alert policies ---------------------------------------------------------------------------------------------------

# Any decision that asks for redelivery or any entry of the function at ERROR, except a not_contained decision (its own
# alert below pages for it, so one record pages once): each one opens an incident (at most one notification per 5
# minutes; a fixed cause closes it after 30 minutes without a new entry).
resource "google_monitoring_alert_policy" "failures" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: a finding failed or was rejected"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Decision with outcome retry, or an entry at ERROR"
    condition_matched_log {
      filter = local.failure_filter
      label_extractors = {
        verdict = "EXTRACT(jsonPayload.verdict)"
        code    = "EXTRACT(jsonPayload.code)"
        finding = "EXTRACT(jsonPayload.finding)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: $${log.extracted_label.code} ($${log.extracted_label.verdict})"
    content   = "A decision record asked for redelivery or was written at ERROR: a containment failed, the message was rejected or forged, or the function is misconfigured. Read the record's reason and actions. ${local.alert_documentation}"
  }

  depends_on = [time_sleep.services_ready]
}

# A terminal decision with an attacker possibly still connected (outcome not_contained, written at ERROR): the message
# is acknowledged, nothing retries it, and nothing the responder does next will close the session. CRITICAL, like a
# dead letter: a person must end the session by hand.
resource "google_monitoring_alert_policy" "not_contained" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: an attacker may still be connected"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Decision with outcome not_contained"
    condition_matched_log {
      filter = local.not_contained_filter
      label_extractors = {
        code      = "EXTRACT(jsonPayload.code)"
        finding   = "EXTRACT(jsonPayload.finding)"
        cluster   = "EXTRACT(jsonPayload.cluster)"
        namespace = "EXTRACT(jsonPayload.pod.namespace)"
        pod       = "EXTRACT(jsonPayload.pod.name)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: an attacker may still be connected to $${log.extracted_label.namespace}/$${log.extracted_label.pod} ($${log.extracted_label.code})"
    content   = <<-EOT
      The responder handled a Reverse Shell finding and could not contain its pod: the reverse shell may still be connected, the message was acknowledged and nothing will retry it.

      1. Read the decision record named in this incident: its `reason` (why containment stopped: a delete the guards or the budget refused, a 403 from RBAC or the admission guard, a protected namespace, an exempt pod, dry-run, `live_session: report`), and the first line of the incident report (published to ${local.names.reports_topic}), which says what a person must do.
      2. End the session by hand: delete the pod (`kubectl delete pod -n NAMESPACE POD`, after capturing what you need), or cut its connection at the network, in cluster $${log.extracted_label.cluster}.
      3. Fix what stopped the responder if it should have acted (RBAC, the budget, the policy), so the next finding is contained.

      More than one record may be behind one notification (at most one per 5 minutes): list them all with the query `${local.not_contained_filter}`. ${local.alert_documentation}
    EOT
  }

  depends_on = [time_sleep.services_ready]
}

# A message in the dead-letter subscription: a finding the function failed on max_delivery_attempts times. Nothing
# retries it any more; a person must fix the cause and replay it.
resource "google_monitoring_alert_policy" "dead_letters" {
  count = var.enable_monitoring && var.enable_dead_letter ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: a finding was dead-lettered"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Undelivered messages in ${local.names.dead_letter_sub}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${local.names.dead_letter_sub}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: a finding was dead-lettered"
    content   = "A finding failed ${var.max_delivery_attempts} delivery attempts and waits in ${local.names.dead_letter_sub}. Its pod may be uncontained. Pull it, fix the cause (see the failure alerts' records), replay it with the function's settings (the replay_environment output, which turns Google APIs on), and acknowledge it only when the replay exits 0 (3: a person must end the session first). ${local.alert_documentation}"
  }

  depends_on = [time_sleep.services_ready]
}

# A finding not acknowledged after unanswered_after_min: no final decision, whether the function failed, was never
# reached (deleted, IAM broken, crashing at start: no record at all) or is still retrying.
resource "google_monitoring_alert_policy" "unanswered" {
  count = var.enable_monitoring ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: a finding has no decision after ${var.unanswered_after_min} min"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Oldest unacknowledged finding on ${local.names.findings_sub}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${local.names.findings_sub}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.unanswered_after_min * 60
      duration        = "0s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: a finding has no decision"
    content   = "A finding published to ${local.names.findings_topic} has had no final decision for ${var.unanswered_after_min} minutes. Look for its records (failure alerts) or for their absence (the function is not reached). ${local.alert_documentation}"
  }

  depends_on = [time_sleep.services_ready]
}

# A finding for a cluster this deployment does not cover (code outside_fleet, WARNING): recorded and not acted on, but
# a real shell in a cluster someone forgot to list. Low urgency: severity WARNING, at most one notification an hour.
resource "google_monitoring_alert_policy" "outside_fleet" {
  count = var.enable_monitoring && var.enable_outside_fleet_alert ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: a finding for a cluster outside the fleet"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Decision with code outside_fleet"
    condition_matched_log {
      filter = local.outside_fleet_filter
      label_extractors = {
        finding = "EXTRACT(jsonPayload.finding)"
        cluster = "EXTRACT(jsonPayload.cluster)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: a finding for cluster $${log.extracted_label.cluster}, outside the fleet"
    content   = "SCC reported a finding for a cluster that is not in this deployment's clusters (RESPONDER_FLEET): the responder recorded it and touched nothing. It may be a real shell in a cluster nobody listed. Look at the finding; if the cluster should be covered, add it to clusters and instantiate modules/cluster-access for it; if another deployment covers it, this one should not receive it (check the SCC notification filters). All such records: `${local.outside_fleet_filter}`. ${local.alert_documentation}"
  }

  depends_on = [time_sleep.services_ready]
}

# --- Canary (canary.tf) ---------------------------------------------------------------------------------------------

# One point per canary record (code canary, verdict ignore, outcome done): the path SCC -> filter -> topic -> function
# worked once more.
resource "google_logging_metric" "canary" {
  count = var.enable_monitoring && local.canary_enabled ? 1 : 0

  project     = var.project_id
  name        = local.metric_names.canary
  description = "Canary records of ${local.names.function}: SCC's canary finding reached the function and was recorded, nothing touched."
  filter      = local.canary_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Responder canary records"
  }

  depends_on = [time_sleep.services_ready]
}

# An alert policy on a user metric is refused until Monitoring knows the metric.
resource "time_sleep" "canary_metric_propagation" {
  count = var.enable_monitoring && local.canary_enabled ? 1 : 0

  create_duration = "120s"

  triggers = {
    metric = google_logging_metric.canary[0].id
  }
}

# No canary record for 3 intervals: a finding SCC raises now may not reach the responder either (filter, publisher
# binding, subscription, function or its configuration broken). An absence condition only watches a metric that has
# had a point: a canary that never came through after the first apply opens nothing (README, "Check the deployment").
resource "google_monitoring_alert_policy" "canary_missing" {
  count = var.enable_monitoring && local.canary_enabled ? 1 : 0

  project               = var.project_id
  display_name          = "${local.names.function}: no canary for 3 intervals"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "No canary record for ${local.canary_absent_after_s / 60} min"
    condition_absent {
      filter   = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${local.metric_names.canary}\""
      duration = "${local.canary_absent_after_s}s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "Reverse Shell Responder: the canary has not come through for ${local.canary_absent_after_s / 60} min"
    content   = "The canary finding written every ${var.canary_interval_min} min under ${coalesce(local.canary_source_name, "the canary source")} has produced no canary record. A real finding may not reach the responder either. Follow it along the path: the Cloud Scheduler job and workflow ${local.names.canary} (did it run, did SCC accept the write), the SCC notification config's filter, the findings topic's publisher binding, the push subscription (unanswered and dead-letter alerts), the function's records (failure alerts). ${local.alert_documentation}"
  }

  depends_on = [time_sleep.canary_metric_propagation]
}

# mode = "enforce" with no notification channel: the responder contains pods and every alert above opens incidents
# that nobody is told about.
check "enforce_mode_pages_someone" {
  assert {
    condition     = var.mode != "enforce" || length(var.notification_channels) > 0
    error_message = "mode = \"enforce\" with notification_channels = []: the responder contains pods, and its alert policies (if enable_monitoring) open incidents in the console that notify nobody, including when a pod could not be contained. Add at least one channel (projects/P/notificationChannels/N)."
  }
}

# --- Dashboard ----------------------------------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "responder" {
  count = var.enable_monitoring ? 1 : 0

  project = var.project_id
  dashboard_json = templatefile("${path.module}/dashboards/responder.json", {
    function            = local.names.function
    decisions           = local.metric_names.decisions
    time_to_containment = local.metric_names.time_to_containment
    findings_sub        = local.names.findings_sub
    dead_letter_sub     = local.names.dead_letter_sub
  })

  depends_on = [time_sleep.services_ready]
}
