# Inputs of the AWS deployment. The secrets must exist in Secrets Manager before `terraform apply`
# (see infra/README.md; only their ARNs are looked up); the rest mirror the defaults of
# stagegate/settings.py.

variable "region" {
  description = "AWS region of the bus, the queues and the functions."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "stagegate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,29}$", var.name_prefix))
    error_message = "name_prefix must be 2-30 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "github_credentials" {
  description = "How the functions authenticate to GitHub: token (the secret github_token_secret_id) or app (the GitHub App: github_app_id, github_app_installation_id and the private key in the secret github_app_private_key_secret_id; protection_rules needs it). Every function gets the one kind, never both."
  type        = string
  default     = "token"

  validation {
    condition     = contains(["token", "app"], var.github_credentials)
    error_message = "github_credentials must be token or app."
  }
}

variable "github_token_secret_id" {
  description = "Secrets Manager secret (name or ARN) holding GITHUB_TOKEN (fine-grained \"Deployments: read and write\", or repo_deployments); looked up with github_credentials = \"token\" only."
  type        = string
  default     = "stagegate/github-token"
}

variable "github_app_id" {
  description = "GITHUB_APP_ID: the GitHub App's numeric id (not secret; set in the functions' configuration). Required with github_credentials = \"app\", null otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_id == null || can(regex("^[1-9][0-9]*$", var.github_app_id))
    error_message = "github_app_id must be the GitHub App's numeric id (its settings page, \"App ID\"), or null."
  }
}

variable "github_app_installation_id" {
  description = "GITHUB_APP_INSTALLATION_ID: the App's installation on the watched repositories' account (not secret; the number at the end of its settings URL). Required with github_credentials = \"app\", null otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_installation_id == null || can(regex("^[1-9][0-9]*$", var.github_app_installation_id))
    error_message = "github_app_installation_id must be the App installation's numeric id, or null."
  }
}

variable "github_app_private_key_secret_id" {
  description = "Secrets Manager secret (name or ARN) holding GITHUB_APP_PRIVATE_KEY (the App's PEM private key, permissions \"Deployments: read and write\", and \"Actions: read\" for protection_rules); looked up with github_credentials = \"app\" only."
  type        = string
  default     = "stagegate/github-app-private-key"
}

variable "github_webhook_secret_secret_id" {
  description = "Secrets Manager secret (name or ARN) holding GITHUB_WEBHOOK_SECRET (several lines while rotating)."
  type        = string
  default     = "stagegate/github-webhook-secret"
}

variable "kubeconfig_secret_id" {
  description = "Secrets Manager secret (name or ARN) holding the kubeconfig the functions use (KUBECONFIG)."
  type        = string
  default     = "stagegate/kubeconfig"
}

variable "dependencies_layer_zip" {
  description = "Zip of the pinned dependencies (requirements-aws.lock) under python/, built for python3.11 x86_64; null means <repo>/build/lambda-dependencies.zip (see infra/README.md)."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the functions' environment variables; null uses the AWS managed key."
  type        = string
  default     = null
}

variable "secrets_kms_key_arn" {
  description = "Customer managed KMS key the secrets are encrypted with; null when they use the AWS managed key (aws/secretsmanager)."
  type        = string
  default     = null
}

variable "github_webhook_reserved_concurrency" {
  description = "Reserved concurrency of the public github_webhook function: the most instances a flood of requests can take (deliveries beyond it are throttled, and GitHub does not redeliver: the next delivery or a resync heals)."
  type        = number
  default     = 10

  validation {
    condition     = var.github_webhook_reserved_concurrency >= 1
    error_message = "github_webhook_reserved_concurrency must be at least 1 (0 would disable the function)."
  }
}

variable "github_protection_rule_reserved_concurrency" {
  description = "Reserved concurrency of the public github_protection_rule function (one delivery per held GitHub Actions job; beyond it deliveries are throttled, and the next bake result answers the job)."
  type        = number
  default     = 5

  validation {
    condition     = var.github_protection_rule_reserved_concurrency >= 1
    error_message = "github_protection_rule_reserved_concurrency must be at least 1 (0 would disable the function)."
  }
}

variable "protection_rules" {
  description = "PROTECTION_RULES of github_protection_rule and github_webhook: which bake the GitHub Actions jobs held by the App's deployment protection rule wait for, owner/repo:environment=kuberik/<name>/<upstream environment> separated by ; or line feeds (e.g. myorg/myapp:production=kuberik/myapp/staging); empty: every held job is rejected. Needs github_credentials = \"app\"."
  type        = string
  default     = ""
}

variable "github_api_url" {
  description = "GITHUB_API_URL: GitHub REST base URL (GitHub Enterprise: https://HOST/api/v3)."
  type        = string
  default     = "https://api.github.com"
}

variable "namespaces" {
  description = "STAGEGATE_NAMESPACES: namespaces whose Environments github_webhook considers; empty means all."
  type        = list(string)
  default     = []
}

variable "audit_deadline_seconds" {
  description = "AUDIT_DEADLINE_SECONDS: timeout of each Kubernetes call made by the Lambda functions."
  type        = number
  default     = 2
}

variable "audit_max_events" {
  description = "AUDIT_MAX_EVENTS: audit documents with more events are refused (400 is the kube-apiserver's default batch size)."
  type        = number
  default     = 400
}

variable "github_webhook_deadline_seconds" {
  description = "GITHUB_WEBHOOK_DEADLINE_SECONDS: timeout of each GitHub call of github_webhook and reporter_sqs (GitHub gives up on a webhook after 10 s)."
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

variable "audit_timeout_seconds" {
  description = "Timeout of k8s_audit_eventbridge per SQS batch; the queue's visibility timeout is six times this."
  type        = number
  default     = 60
}

variable "audit_batch_size" {
  description = "SQS messages per invocation of k8s_audit_eventbridge (one audit event each)."
  type        = number
  default     = 10
}

variable "audit_max_concurrency" {
  description = "Most concurrent k8s_audit_eventbridge invocations the SQS poller starts (2-1000)."
  type        = number
  default     = 5
}

variable "audit_max_receive_count" {
  description = "Receives of one audit message before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5
}

variable "reporter_deadline_seconds" {
  description = "REPORTER_DEADLINE_SECONDS: longest time reporter_sqs spends on one report; its timeout is report_batch_size times this plus 30 s, the reports queue's visibility timeout six times that."
  type        = number
  default     = 60

  validation {
    condition     = var.reporter_deadline_seconds >= 1 && var.reporter_deadline_seconds <= 870
    error_message = "reporter_deadline_seconds must be 1-870 (a Lambda runs at most 900 s; see also report_batch_size)."
  }
}

variable "report_lease_seconds" {
  description = "REPORT_LEASE_SECONDS: how long the reporter's per-Rollout Lease holds when not released; keep it above reporter_deadline_seconds."
  type        = number
  default     = 120
}

variable "report_batch_size" {
  description = "Reports per invocation of reporter_sqs (one audit event each; a FIFO queue gives at most 10). They are made one after the other, so the function's timeout grows with it."
  type        = number
  default     = 1

  validation {
    condition     = var.report_batch_size >= 1 && var.report_batch_size <= 10
    error_message = "report_batch_size must be 1-10 (the most a FIFO queue gives per batch)."
  }
}

variable "report_max_concurrency" {
  description = "Most concurrent reporter_sqs invocations the SQS poller starts (2-1000); reports of one Rollout are never concurrent."
  type        = number
  default     = 5
}

variable "report_max_receive_count" {
  description = "Receives of one report before SQS moves it to the reports dead-letter queue (each retry waits the visibility timeout)."
  type        = number
  default     = 10
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups."
  type        = number
  default     = 30
}

variable "eks_cluster_name" {
  description = "Name of an EKS cluster whose audit log (CloudWatch Logs group /aws/eks/<name>/cluster, control-plane log type \"audit\" enabled) feeds k8s_audit_cloudwatch; null for none (the function is then never invoked)."
  type        = string
  default     = null

  validation {
    condition     = var.eks_cluster_name == null || can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.eks_cluster_name))
    error_message = "eks_cluster_name must be an EKS cluster name: 1-100 letters, digits, hyphens or underscores, starting with a letter or digit."
  }
}

variable "eks_audit_max_event_age_seconds" {
  description = "How long Lambda keeps retrying an EKS audit delivery k8s_audit_cloudwatch failed on (60-21600; at most two retries, one and three minutes after the first attempt)."
  type        = number
  default     = 3600

  validation {
    condition     = var.eks_audit_max_event_age_seconds >= 60 && var.eks_audit_max_event_age_seconds <= 21600
    error_message = "eks_audit_max_event_age_seconds must be 60-21600 (Lambda's bounds for asynchronous invocations)."
  }
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
