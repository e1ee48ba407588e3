output "k8s_audit_http_url" {
  description = "Audit webhook backend for a kube-apiserver in blocking mode (the webhook kubeconfig's server)."
  value       = google_cloudfunctions2_function.this["k8s_audit_http"].service_config[0].uri
}

output "audit_bridge_url" {
  description = "Audit webhook backend for a kube-apiserver in batch mode: publishes to the audit topic."
  value       = google_cloudfunctions2_function.this["audit_bridge"].service_config[0].uri
}

output "github_webhook_url" {
  description = "Payload URL of the GitHub webhook (event: Deployment statuses)."
  value       = google_cloudfunctions2_function.this["github_webhook"].service_config[0].uri
}

output "github_protection_rule_url" {
  description = "Webhook URL of the GitHub App (event: Deployment protection rule; webhook secret: a line of GITHUB_WEBHOOK_SECRET)."
  value       = google_cloudfunctions2_function.this["github_protection_rule"].service_config[0].uri
}

output "resync_http_url" {
  description = "The scheduled resync; only Cloud Scheduler's service account (OIDC) may invoke it."
  value       = google_cloudfunctions2_function.this["resync_http"].service_config[0].uri
}

output "audit_topic" {
  description = "BRIDGE_PUBSUB_TOPIC: where audit_bridge publishes and k8s_audit consumes."
  value       = google_pubsub_topic.audit.id
}

output "audit_dead_letter_subscription" {
  description = "Audit messages k8s_audit could not handle after every delivery attempt."
  value       = google_pubsub_subscription.dead_letter["k8s_audit"].id
}

output "reports_topic" {
  description = "REPORT_PUBSUB_TOPIC: where k8s_audit_http and audit_bridge hand Rollout status events for the reporter."
  value       = google_pubsub_topic.reports.id
}

output "reports_dead_letter_subscription" {
  description = "Reports the reporter could not make after every delivery attempt."
  value       = google_pubsub_subscription.dead_letter["reporter"].id
}

output "secret_ids" {
  description = "Secret Manager secrets to fill (gcloud secrets versions add ID --data-file=...)."
  value       = { for name, secret in google_secret_manager_secret.this : name => secret.secret_id }
}

output "service_accounts" {
  description = "Runtime service account of each function."
  value       = { for name, account in google_service_account.function : name => account.email }
}

output "resync_scheduler_service_account" {
  description = "The identity Cloud Scheduler calls resync_http as (the only invoker of resync_http)."
  value       = google_service_account.resync_scheduler.email
}

output "gke_audit_topic" {
  description = "GKE (with gke_audit_logs): where the Logging sink publishes the cluster's audit entries; null without."
  value       = var.gke_audit_logs ? google_pubsub_topic.gke_audit[0].id : null
}

output "gke_audit_sink_writer_identity" {
  description = "GKE (with gke_audit_logs): the identity the sink publishes as (granted roles/pubsub.publisher on the topic only); null without."
  value       = var.gke_audit_logs ? google_logging_project_sink.gke_audit[0].writer_identity : null
}
