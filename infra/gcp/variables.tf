# Inputs of the GCP deployment. Only project_id is required; the rest mirror the defaults the code
# itself uses (stagegate/settings.py), so leaving them alone changes nothing.

variable "project_id" {
  description = "Google Cloud project that hosts the functions, the Pub/Sub topic and the secrets."
  type        = string
}

variable "region" {
  description = "Region of the functions, the Cloud Scheduler job and the Eventarc trigger."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service account ids are <prefix>-<function>, or <prefix>-protection-rule for github_protection_rule: at most 30 characters)."
  type        = string
  default     = "stagegate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,13}$", var.name_prefix))
    error_message = "name_prefix must be 2-14 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "github_api_url" {
  description = "GITHUB_API_URL: GitHub REST base URL (GitHub Enterprise: https://HOST/api/v3)."
  type        = string
  default     = "https://api.github.com"
}

variable "github_credentials" {
  description = "How the functions that read GitHub authenticate: token (the secret GITHUB_TOKEN) or app (the GitHub App's secrets GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY, GITHUB_APP_INSTALLATION_ID; protection_rules needs it)."
  type        = string
  default     = "token"

  validation {
    condition     = contains(["token", "app"], var.github_credentials)
    error_message = "github_credentials must be token or app."
  }
}

variable "protection_rules" {
  description = "PROTECTION_RULES of github_protection_rule, github_webhook and resync_http: which bake the GitHub Actions jobs held by the App's deployment protection rule wait for, owner/repo:environment=kuberik/<name>/<upstream environment> separated by ; or line feeds (e.g. myorg/myapp:production=kuberik/myapp/staging); empty: every held job is rejected. Needs github_credentials = \"app\"."
  type        = string
  default     = ""
}

variable "namespaces" {
  description = "STAGEGATE_NAMESPACES: namespaces whose Environments github_webhook and resync consider; empty means all."
  type        = list(string)
  default     = []
}

variable "audit_deadline_seconds" {
  description = "AUDIT_DEADLINE_SECONDS: longest time k8s_audit_http takes to answer the apiserver."
  type        = number
  default     = 2
}

variable "audit_max_body_bytes" {
  description = "AUDIT_MAX_BODY_BYTES: larger audit webhook bodies are refused with 413."
  type        = number
  default     = 4194304
}

variable "audit_max_events" {
  description = "AUDIT_MAX_EVENTS: audit deliveries with more events are refused with 413 (400 is the kube-apiserver's default batch size)."
  type        = number
  default     = 400
}

variable "github_webhook_deadline_seconds" {
  description = "GITHUB_WEBHOOK_DEADLINE_SECONDS: longest answer time of github_webhook and resync (GitHub gives up after 10 s); the reporter uses it as the timeout of each GitHub and Kubernetes call."
  type        = number
  default     = 8
}

variable "github_webhook_max_body_bytes" {
  description = "GITHUB_WEBHOOK_MAX_BODY_BYTES: larger GitHub deliveries are refused with 413."
  type        = number
  default     = 5242880
}

variable "kube_conflict_retries" {
  description = "KUBE_CONFLICT_RETRIES: recompute-and-retry attempts on gate write conflicts."
  type        = number
  default     = 5
}

variable "k8s_audit_delivery" {
  # "push_subscription" (default): a Pub/Sub push subscription managed here, with message ordering,
  # a dead-letter topic, min/max backoff and max delivery attempts. "eventarc": the function's own
  # event_trigger (retry policy RETRY_POLICY_RETRY); Eventarc creates that subscription itself, so it
  # has no message ordering and no dead-letter topic.
  description = "How k8s_audit receives the audit topic: push_subscription (ordered, dead-letter topic) or eventarc (event_trigger, RETRY_POLICY_RETRY)."
  type        = string
  default     = "push_subscription"

  validation {
    condition     = contains(["push_subscription", "eventarc"], var.k8s_audit_delivery)
    error_message = "k8s_audit_delivery must be push_subscription or eventarc."
  }
}

variable "audit_max_delivery_attempts" {
  description = "Deliveries of one audit message to k8s_audit before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10
}

variable "audit_minimum_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a failed audit message."
  type        = string
  default     = "10s"
}

variable "audit_maximum_backoff" {
  description = "Longest wait before Pub/Sub redelivers a failed audit message."
  type        = string
  default     = "600s"
}

variable "reporter_deadline_seconds" {
  description = "REPORTER_DEADLINE_SECONDS: longest time the reporter spends on one report; its timeout and its subscription's ack deadline are 30 s more."
  type        = number
  default     = 60

  validation {
    condition     = var.reporter_deadline_seconds >= 1 && var.reporter_deadline_seconds <= 570
    error_message = "reporter_deadline_seconds must be 1-570 (Pub/Sub's ack deadline, 30 s more, is at most 600 s)."
  }
}

variable "report_lease_seconds" {
  description = "REPORT_LEASE_SECONDS: how long the reporter's per-Rollout Lease holds when not released; keep it above reporter_deadline_seconds."
  type        = number
  default     = 120
}

variable "resync_reports" {
  description = "RESYNC_REPORTS: the scheduled resync also records every governed Rollout's history on GitHub (turn on once kuberik's Go environment controller no longer writes there)."
  type        = bool
  default     = false
}

variable "report_max_delivery_attempts" {
  description = "Deliveries of one report to the reporter before it goes to the reports dead-letter topic (5-100)."
  type        = number
  default     = 20

  validation {
    condition     = var.report_max_delivery_attempts >= 5 && var.report_max_delivery_attempts <= 100
    error_message = "report_max_delivery_attempts must be 5-100."
  }
}

variable "report_minimum_backoff" {
  description = "Shortest wait before Pub/Sub redelivers a failed report (the backoff grows exponentially from here)."
  type        = string
  default     = "10s"
}

variable "report_maximum_backoff" {
  description = "Longest wait before Pub/Sub redelivers a failed report (a GitHub secondary rate limit or outage is waited out here)."
  type        = string
  default     = "600s"
}

variable "audit_http_min_instances" {
  description = "Warm instances of k8s_audit_http: in blocking mode the apiserver waits for it, so a cold start is felt by every Environment write."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Upper bound of instances per function."
  type        = number
  default     = 10
}

variable "resync_schedule" {
  description = "Cron schedule of the resync job (Cloud Scheduler)."
  type        = string
  default     = "*/10 * * * *"
}

variable "build_service_account" {
  description = "Service account Cloud Build uses to build the functions (projects/P/serviceAccounts/EMAIL); null keeps the project default."
  type        = string
  default     = null
}

variable "gke_audit_logs" {
  description = "GKE: route the cluster's Cloud Audit Logs entries of Environment writes and Rollout status writes through a Logging sink and a topic to k8s_audit and the reporter (gke_audit_logs.tf), for clusters whose apiserver takes no audit webhook."
  type        = bool
  default     = false
}

variable "gke_cluster_name" {
  description = "GKE (with gke_audit_logs): the cluster's name (resource.labels.cluster_name of its audit entries)."
  type        = string
  default     = ""
}

variable "gke_cluster_location" {
  description = "GKE (with gke_audit_logs): the cluster's region or zone (resource.labels.location)."
  type        = string
  default     = ""
}

variable "gke_cluster_project" {
  description = "GKE (with gke_audit_logs): the project the cluster and its audit logs are in (the sink is made there); null means project_id. Rollout status entries arrive only with Data Access DATA_WRITE logs enabled for the service k8s.io in that project."
  type        = string
  default     = null
}

variable "environment_status" {
  description = "ENVIRONMENT_STATUS: github_webhook, the reporter and the resync write each Environment's .status as kuberik's environment controller does (its rollout-dashboard reads it); false while that controller still runs."
  type        = bool
  default     = true
}

variable "report_environment_url" {
  description = "REPORT_ENVIRONMENT_URL: the environment_url the reporter writes on each deployment status (kuberik's rollout-dashboard), e.g. https://rollouts.example.com/rollouts/{namespace}/{name}; empty: none."
  type        = string
  default     = ""

  validation {
    condition     = var.report_environment_url == "" || can(regex("^https?://", var.report_environment_url))
    error_message = "report_environment_url must be empty or an http(s) URL."
  }
}
