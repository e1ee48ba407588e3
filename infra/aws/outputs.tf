output "github_webhook_url" {
  description = "Payload URL of the GitHub webhook (event: Deployment statuses)."
  value       = aws_lambda_function_url.github_webhook.function_url
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
  description = "Environment of an audit_bridge that publishes to this deployment (plus AUDIT_WEBHOOK_TOKEN and AWS_REGION)."
  value = {
    BRIDGE_TRANSPORT = "eventbridge"
    BRIDGE_EVENT_BUS = aws_cloudwatch_event_bus.audit.name
  }
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
