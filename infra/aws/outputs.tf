output "github_webhook_url" {
  description = "Payload URL of the GitHub webhook (event: Deployment statuses)."
  value       = aws_lambda_function_url.public["github_webhook"].function_url
}

output "github_protection_rule_url" {
  description = "Webhook URL of the GitHub App (event: Deployment protection rule; webhook secret: a line of GITHUB_WEBHOOK_SECRET)."
  value       = aws_lambda_function_url.public["github_protection_rule"].function_url
}

output "event_bus_name" {
  description = "BRIDGE_EVENT_BUS for audit_bridge."
  value       = aws_cloudwatch_event_bus.audit.name
}

output "event_bus_arn" {
  description = "The audit event bus."
  value       = aws_cloudwatch_event_bus.audit.arn
}

output "bridge_environment" {
  description = "Environment of an audit_bridge that publishes to this deployment (plus AUDIT_WEBHOOK_TOKEN and AWS_REGION); its identity needs both bridge_publisher_policy_arn and report_producer_policy_arn."
  value = {
    BRIDGE_TRANSPORT     = "eventbridge"
    BRIDGE_EVENT_BUS     = aws_cloudwatch_event_bus.audit.name
    REPORT_TRANSPORT     = "sqs"
    REPORT_SQS_QUEUE_URL = aws_sqs_queue.reports.id
  }
}

output "report_environment" {
  description = "What k8s_audit_http (or audit_bridge) needs to hand Rollout status events to reporter_sqs (plus AWS_REGION; its identity needs report_producer_policy_arn)."
  value = {
    REPORT_TRANSPORT     = "sqs"
    REPORT_SQS_QUEUE_URL = aws_sqs_queue.reports.id
  }
}

output "report_producer_policy_arn" {
  description = "Managed policy to attach to the identity audit_bridge or k8s_audit_http runs as: sqs:SendMessage on the reports queue only."
  value       = aws_iam_policy.report_producer.arn
}

output "report_producer_policy_json" {
  description = "The same policy as JSON, for an identity outside Terraform."
  value       = data.aws_iam_policy_document.report_producer.json
}

output "bridge_publisher_policy_arn" {
  description = "Managed policy to attach to the identity audit_bridge runs as: events:PutEvents on the audit bus only."
  value       = aws_iam_policy.bridge_publisher.arn
}

output "bridge_publisher_policy_json" {
  description = "The same policy as JSON, for an identity in another account or outside Terraform."
  value       = data.aws_iam_policy_document.bridge_publisher.json
}

output "audit_queue_url" {
  description = "The queue k8s_audit_eventbridge consumes."
  value       = aws_sqs_queue.audit.id
}

output "audit_dead_letter_queue_url" {
  description = "Audit events that could not be delivered or handled (kept 14 days)."
  value       = aws_sqs_queue.audit_dead_letter.id
}

output "report_queue_url" {
  description = "REPORT_SQS_QUEUE_URL: the FIFO queue reporter_sqs consumes."
  value       = aws_sqs_queue.reports.id
}

output "report_dead_letter_queue_url" {
  description = "Reports reporter_sqs could not make after report_max_receive_count receives (kept 14 days)."
  value       = aws_sqs_queue.reports_dead_letter.id
}
