# Log metric filters: on Lambda the numbers the in-cluster install serves to Prometheus
# (stagegate/metrics.py) are counted from each function's JSON log lines, whose fields carry the same
# labels (namespace `${var.name_prefix}` in CloudWatch). tests/infra/test_terraform.py checks that every
# logger, message and field named here is one the code logs. Invocations and errors need none of ours:
# Lambda's own AWS/Lambda metrics have them.

locals {
  log_filters = {
    # stagegate_gate_changes_total{change}
    GateChanges = {
      pattern    = "{ ($.logger = \"stagegate.reconcile\") && ($.change = \"*\") }"
      value      = "1"
      dimensions = { change = "$.change" }
    }
    # stagegate_github_requests_total{outcome!="ok"}: only failures are logged
    GitHubFailures = {
      pattern    = "{ ($.logger = \"stagegate.github\") && ($.message = \"a GitHub call failed\") }"
      value      = "1"
      dimensions = {}
    }
    # stagegate_recompute_failures_total
    RecomputeFailures = {
      pattern    = "{ ($.logger = \"stagegate.recompute\") && ($.message = \"cannot recompute this Environment*\") }"
      value      = "1"
      dimensions = {}
    }
    # stagegate_report_lag_seconds (one sample per status recorded)
    ReportLagSeconds = {
      pattern    = "{ ($.logger = \"stagegate.reporter\") && ($.lagSeconds = *) }"
      value      = "$.lagSeconds"
      dimensions = {}
    }
  }
  log_metric_filters = {
    for pair in setproduct(keys(local.lambdas), keys(local.log_filters)) : "${pair[0]}.${pair[1]}" => {
      lambda = pair[0]
      metric = pair[1]
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "this" {
  for_each       = local.log_metric_filters
  name           = "${var.name_prefix}-${replace(each.value.lambda, "_", "-")}-${each.value.metric}"
  log_group_name = aws_cloudwatch_log_group.lambda[each.value.lambda].name
  pattern        = local.log_filters[each.value.metric].pattern

  metric_transformation {
    name       = each.value.metric
    namespace  = var.name_prefix
    value      = local.log_filters[each.value.metric].value
    unit       = each.value.metric == "ReportLagSeconds" ? "Seconds" : "Count"
    dimensions = local.log_filters[each.value.metric].dimensions
  }
}
