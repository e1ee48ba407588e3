# EKS: nobody can set the kube-apiserver's audit webhook flags there, so neither k8s_audit_http nor
# audit_bridge can receive its audit events. EKS control-plane logging (log type "audit") writes them to
# CloudWatch Logs instead, one audit.k8s.io/v1 Event as JSON per log event, in the log group
# /aws/eks/<cluster>/cluster (streams kube-apiserver-audit-<id>). A subscription filter on that group
# delivers the events stagegate acts on to k8s_audit_cloudwatch (main.tf, local.lambdas), which CloudWatch
# Logs invokes asynchronously.
#
# Everything here exists only when var.eks_cluster_name is set, except the function's retry settings.
# The cluster must send its audit log already (a precondition checks it): enable it with
#   aws eks update-cluster-config --name <cluster> \
#     --logging '{"clusterLogging":[{"types":["audit"],"enabled":true}]}'
# A log group takes at most two subscription filters; this one uses one of them.

locals {
  eks_enabled = var.eks_cluster_name != null

  # CloudWatch Logs JSON filter pattern: completed, successful writes of Environments and of Rollouts'
  # status, the (group, resource, subresource, verb) table of shared/audit.py ROUTES. Everything else in
  # the audit log (reads, other resources: nearly all of it) never invokes the function.
  # tests/infra/test_terraform_eks.py parses this pattern and checks it against ROUTES and sample events.
  eks_audit_filter_pattern = "{ ($.stage = \"ResponseComplete\") && ($.responseStatus.code >= 200) && ($.responseStatus.code < 300) && ($.verb = \"create\" || $.verb = \"update\" || $.verb = \"patch\") && (($.objectRef.apiGroup = \"environments.kuberik.com\" && $.objectRef.resource = \"environments\") || ($.objectRef.apiGroup = \"kuberik.com\" && $.objectRef.resource = \"rollouts\" && $.objectRef.subresource = \"status\")) }"
}

# The cluster, to check at plan time that it sends its audit log to CloudWatch Logs.
data "aws_eks_cluster" "audited" {
  count = local.eks_enabled ? 1 : 0
  name  = var.eks_cluster_name
}

# EKS creates the group when control-plane logging is first enabled.
data "aws_cloudwatch_log_group" "eks" {
  count = local.eks_enabled ? 1 : 0
  name  = "/aws/eks/${var.eks_cluster_name}/cluster"
}

# Only CloudWatch Logs, and only for this log group, may invoke the function (the data source's arn has
# no ":*" suffix; the invocations come from the group's streams).
resource "aws_lambda_permission" "eks_audit_logs" {
  count         = local.eks_enabled ? 1 : 0
  statement_id  = "StagegateEksAuditLogs"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["k8s_audit_cloudwatch"].function_name
  principal     = "logs.amazonaws.com"
  source_arn    = "${data.aws_cloudwatch_log_group.eks[0].arn}:*"
}

resource "aws_cloudwatch_log_subscription_filter" "eks_audit" {
  count           = local.eks_enabled ? 1 : 0
  name            = "${var.name_prefix}-eks-audit"
  log_group_name  = data.aws_cloudwatch_log_group.eks[0].name
  filter_pattern  = local.eks_audit_filter_pattern
  destination_arn = aws_lambda_function.this["k8s_audit_cloudwatch"].arn

  lifecycle {
    precondition {
      condition     = contains(data.aws_eks_cluster.audited[0].enabled_cluster_log_types, "audit")
      error_message = "The EKS cluster does not send its audit log to CloudWatch Logs: enable control-plane log type \"audit\" first."
    }
  }

  depends_on = [aws_lambda_permission.eks_audit_logs]
}

# A delivery that failed in a way that may pass (Kubernetes or the reports queue unavailable) raises;
# Lambda runs it again twice, one and then two minutes later, and drops it after that or once it is
# older than eks_audit_max_event_age_seconds (the function's log names it). What is dropped waits for the
# next event of that object or a resync run. A failure to invoke at all (throttling) CloudWatch Logs
# itself retries for up to 24 hours.
resource "aws_lambda_function_event_invoke_config" "k8s_audit_cloudwatch" {
  function_name                = aws_lambda_function.this["k8s_audit_cloudwatch"].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = var.eks_audit_max_event_age_seconds
}
