# GKE: Cloud Audit Logs instead of the audit webhook (optional, var.gke_audit_logs).
#
# On GKE nobody can set the kube-apiserver's audit webhook flags; GKE writes the apiserver's audit
# events to Cloud Logging as Cloud Audit Logs entries (protoPayload: google.cloud.audit.AuditLog,
# serviceName "k8s.io", resource.type "k8s_cluster"). A Logging sink routes the few entries stagegate
# acts on to a topic of their own, one LogEntry (JSON) per message; k8s_audit and the reporter read
# them as Metadata-level audit events (shared/cloud_audit_log.py) and read the objects from the API.
#
# Which log: GKE writes Environment creates, updates and patches to the Admin Activity log (always
# on), but status writes (a Rollout's status) to the Data Access log as DATA_WRITE, which is off until
# it is enabled for the service k8s.io (IAM audit config of the cluster's project). That is left to
# the project's owner: it is project-wide and billed by volume, and Terraform may not grant anything
# project-wide here. Without it the reporter gets nothing through this path and the scheduled resync
# with resync_reports = true records the bake results.
#
# Ordering: a sink publishes without ordering keys, so neither subscription is ordered. That is fine:
# every event only says "look again" (k8s_audit recomputes from the API and GitHub), and reports of one
# Rollout are serialized by the reporter's per-Rollout Lease.

locals {
  gke_project = coalesce(var.gke_cluster_project, var.project_id)

  # What stagegate routes (shared/audit.py ROUTES), and nothing else: writes (create, update, patch)
  # of Environments, and writes of Rollouts' status subresource, in the one cluster, from either audit
  # log. `[.]` rather than `\.`: no escaping rules of the filter language get in the way.
  gke_audit_filter = <<-EOT
    resource.type="k8s_cluster"
    resource.labels.project_id="${local.gke_project}"
    resource.labels.location="${var.gke_cluster_location}"
    resource.labels.cluster_name="${var.gke_cluster_name}"
    logName=("projects/${local.gke_project}/logs/cloudaudit.googleapis.com%2Factivity" OR "projects/${local.gke_project}/logs/cloudaudit.googleapis.com%2Fdata_access")
    protoPayload.serviceName="k8s.io"
    protoPayload.methodName=~"[.](create|update|patch)$"
    (protoPayload.resourceName=~"^environments[.]kuberik[.]com/[^/]+/namespaces/[^/]+/environments/[^/]+$" OR protoPayload.resourceName=~"^kuberik[.]com/[^/]+/namespaces/[^/]+/rollouts/[^/]+/status$")
  EOT
}

resource "google_pubsub_topic" "gke_audit" {
  count = var.gke_audit_logs ? 1 : 0

  name                       = "${var.name_prefix}-gke-audit-entries"
  message_retention_duration = "86400s"
}

resource "google_logging_project_sink" "gke_audit" {
  count = var.gke_audit_logs ? 1 : 0

  project                = local.gke_project
  name                   = "${var.name_prefix}-gke-audit"
  description            = "stagegate: GKE audit entries of Environment writes and Rollout status writes -> k8s_audit and the reporter"
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.gke_audit[0].id}"
  filter                 = local.gke_audit_filter
  unique_writer_identity = true

  lifecycle {
    precondition {
      condition     = var.gke_cluster_name != "" && var.gke_cluster_location != ""
      error_message = "gke_audit_logs needs gke_cluster_name and gke_cluster_location."
    }
  }
}

# The sink writes as its own identity, which may publish to this topic and nothing else.
resource "google_pubsub_topic_iam_member" "gke_audit_sink_publisher" {
  count = var.gke_audit_logs ? 1 : 0

  topic  = google_pubsub_topic.gke_audit[0].id
  role   = "roles/pubsub.publisher"
  member = google_logging_project_sink.gke_audit[0].writer_identity
}

# The topic's two push subscriptions, to k8s_audit and to the reporter, are the gke_audit_k8s_audit and
# gke_audit_reporter entries of local.push_subscriptions (main.tf), enabled by gke_audit_logs. They
# deliver as every push to those functions does (local.push_deliveries: the same identities, retries and
# dead-letter topics as the audit and reports subscriptions).
