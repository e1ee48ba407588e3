# Log-based metrics: on Cloud Run the numbers the in-cluster install serves to Prometheus
# (stagegate/metrics.py) are counted from the functions' JSON log lines, whose fields carry the same
# labels. tests/infra/test_terraform.py checks that every logger, message and field named here is one
# the code logs. Requests and their status codes need none of ours: Cloud Run's built-in
# run.googleapis.com/request_count has them (label response_code). k8s_admission runs in the cluster
# only, with its Prometheus metrics.

locals {
  log_scope = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name:\"${var.name_prefix}-\""
  log_counts = {
    # stagegate_gate_changes_total{change}
    gate_changes = {
      description = "RolloutGate writes by change: created, opened, narrowed, other"
      filter      = "jsonPayload.logger=\"stagegate.reconcile\" AND jsonPayload.change:*"
      label       = "change"
    }
    # stagegate_github_requests_total{outcome!="ok"}: only failures are logged, with GitHub's status
    github_failures = {
      description = "GitHub requests that failed (status: GitHub's HTTP status; none when nothing answered)"
      filter      = "jsonPayload.logger=\"stagegate.github\" AND jsonPayload.message=\"a GitHub call failed\""
      label       = "status"
    }
    # stagegate_recompute_failures_total
    recompute_failures = {
      description = "Environments whose gate could not be recomputed: their gates stay as they were"
      filter      = "jsonPayload.logger=\"stagegate.recompute\" AND jsonPayload.message:\"cannot recompute this Environment\""
      label       = null
    }
  }
}

resource "google_logging_metric" "count" {
  for_each    = local.log_counts
  project     = var.project_id
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = "${local.log_scope} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    dynamic "labels" {
      for_each = each.value.label == null ? [] : [each.value.label]
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }
  label_extractors = each.value.label == null ? {} : { (each.value.label) = "EXTRACT(jsonPayload.${each.value.label})" }
}

# stagegate_report_lag_seconds: from the rollout controller's stamp of a bake state to its record on
# GitHub, as the reporter logs it (lagSeconds), in the same buckets.
resource "google_logging_metric" "report_lag" {
  project     = var.project_id
  name        = "${var.name_prefix}/report_lag_seconds"
  description = "Seconds from a Rollout history entry's bake state to its status on GitHub"
  filter      = "${local.log_scope} AND jsonPayload.logger=\"stagegate.reporter\" AND jsonPayload.lagSeconds:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }
  value_extractor = "EXTRACT(jsonPayload.lagSeconds)"
  bucket_options {
    explicit_buckets {
      bounds = [1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
    }
  }
}
