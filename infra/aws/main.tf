# stagegate on AWS: audit events arrive on an EventBridge bus (published by audit_bridge with
# BRIDGE_TRANSPORT=eventbridge), a rule sends them to an SQS queue with a dead-letter queue, and
# k8s_audit_eventbridge consumes the queue; github_webhook and github_protection_rule answer GitHub on
# function URLs. Rollout status events are handed (REPORT_TRANSPORT=sqs, by audit_bridge or
# k8s_audit_http) to an SQS FIFO queue, one message group per Rollout, which reporter_sqs consumes. On
# EKS, where the apiserver's audit webhook cannot be configured, k8s_audit_cloudwatch takes the audit
# events from the cluster's CloudWatch Logs audit streams instead (eks.tf) and hands Rollout status
# events to the same queue.
#
# No secret value passes through Terraform: the functions get the ARNs of their secrets
# (*_SECRET_ARN) and read them at cold start (stagegate/aws_secrets.py), with a role that may read
# exactly those. Neither the functions' configuration, nor a layer, nor the state holds a secret.
#
# Names the code depends on (handlers, environment variable names, the event source and detail type
# of stagegate/bridge.py) are written out literally, so tests/infra/test_terraform.py can check them
# against the code without running terraform.

terraform {
  required_version = ">= 1.5"

  required_providers {
    # 6.28 adds aws_lambda_permission.invoked_via_function_url (function URLs need lambda:InvokeFunction too).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.28, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

provider "aws" {
  region = var.region
}

locals {
  repo_root = abspath("${path.module}/../..")

  # What the handlers import, and nothing else: tests/, .venv/, bench/, scripts/ stay out. The
  # third-party packages come in the dependencies layer.
  source_files = sort(setunion(
    fileset(local.repo_root, "{functions,shared,stagegate}/**/*.py"),
    fileset(local.repo_root, "{shared,stagegate}/py.typed"),
  ))

  dependencies_layer_zip = coalesce(var.dependencies_layer_zip, "${local.repo_root}/build/lambda-dependencies.zip")

  namespaces = join(",", var.namespaces)

  # The reporter's Lambda timeout: one invocation makes the reports of its batch one after the other, each
  # within its own deadline (REPORTER_DEADLINE_SECONDS), plus room to answer. The reports queue's
  # visibility timeout is six times this (a failed report is retried after it).
  reporter_timeout_seconds = var.report_batch_size * var.reporter_deadline_seconds + 30

  # Where each secret lives in Secrets Manager (name or ARN), by the variable the code reads it into:
  # only the secrets some function reads are looked up, the token's or the GitHub App's private key's
  # (var.github_credentials), never both.
  secret_ids = merge(
    {
      GITHUB_WEBHOOK_SECRET = var.github_webhook_secret_secret_id
      KUBECONFIG            = var.kubeconfig_secret_id
    },
    {
      token = { GITHUB_TOKEN = var.github_token_secret_id }
      app   = { GITHUB_APP_PRIVATE_KEY = var.github_app_private_key_secret_id }
    }[var.github_credentials],
  )

  # The GitHub credentials every function gets (all of them read GitHub), by var.github_credentials:
  # the token's secret, or the GitHub App's ids (not secret) and its private key's secret; never both
  # (a token and App credentials together stop the functions at start). A conditional, not a map
  # indexed by the variable: only the chosen kind's secret exists in data.aws_secretsmanager_secret.this.
  github_environment = var.github_credentials == "app" ? tomap({
    GITHUB_APP_ID                     = var.github_app_id
    GITHUB_APP_INSTALLATION_ID        = var.github_app_installation_id
    GITHUB_APP_PRIVATE_KEY_SECRET_ARN = data.aws_secretsmanager_secret.this["GITHUB_APP_PRIVATE_KEY"].arn
    }) : tomap({
    GITHUB_TOKEN_SECRET_ARN = data.aws_secretsmanager_secret.this["GITHUB_TOKEN"].arn
  })

  # The Lambda functions: one aws_lambda_function.this (with its role, policy and log group) each.
  # Handlers and variable names are the code's. Each function gets the ARNs of the secrets it reads
  # (*_SECRET_ARN) and may read exactly those (its role's policy takes them from these variables),
  # the GitHub credentials' (local.github_environment) among them. A function that produces_reports
  # gets the report_producer policy (sqs:SendMessage on the reports queue) as well; one that
  # hands_off_to_bus, the bridge_publisher policy (events:PutEvents on the audit bus, stagegate's audit
  # events only).
  lambdas = {
    # Kubernetes audit events from EventBridge via SQS (aws_lambda_event_source_mapping.audit_queue).
    # Its concurrency is bounded by the event source mapping (audit_max_concurrency), not reserved.
    k8s_audit_eventbridge = {
      handler               = "functions.aws_lambda.main.k8s_audit_eventbridge"
      description           = "Kubernetes audit events from EventBridge via SQS: ensures and recomputes gates"
      timeout               = var.audit_timeout_seconds
      consumes_audit_queue  = true
      consumes_report_queue = false
      produces_reports      = false
      hands_off_to_bus      = false
      reserved_concurrency  = null
      environment = merge(local.github_environment, {
        KUBECONFIG_SECRET_ARN  = data.aws_secretsmanager_secret.this["KUBECONFIG"].arn
        GITHUB_API_URL         = var.github_api_url
        AUDIT_DEADLINE_SECONDS = tostring(var.audit_deadline_seconds)
        AUDIT_MAX_EVENTS       = tostring(var.audit_max_events)
        KUBE_CONFLICT_RETRIES  = tostring(var.kube_conflict_retries)
      })
    }

    # GitHub deliveries on a public function URL (aws_lambda_function_url.github_webhook). Anyone can
    # call it, so its reserved concurrency caps what a flood can take: the account's other functions
    # (k8s_audit_eventbridge) keep theirs, and the Kubernetes API and GitHub see at most that many.
    github_webhook = {
      handler               = "functions.aws_lambda.main.github_webhook"
      description           = "GitHub deployment_status webhooks (signed): recomputes the downstream gates"
      timeout               = 15
      consumes_audit_queue  = false
      consumes_report_queue = false
      produces_reports      = false
      hands_off_to_bus      = true
      reserved_concurrency  = var.github_webhook_reserved_concurrency
      environment = merge(local.github_environment, {
        KUBECONFIG_SECRET_ARN           = data.aws_secretsmanager_secret.this["KUBECONFIG"].arn
        GITHUB_WEBHOOK_SECRET_ARN       = data.aws_secretsmanager_secret.this["GITHUB_WEBHOOK_SECRET"].arn
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        GITHUB_WEBHOOK_MAX_BODY_BYTES   = tostring(var.github_webhook_max_body_bytes)
        KUBE_CONFLICT_RETRIES           = tostring(var.kube_conflict_retries)
        STAGEGATE_NAMESPACES            = local.namespaces
        # What a revocation cannot reach before the deadline (GitHub waits 10 s, never redelivers) goes
        # to the audit bus as "look again at Rollout X" events, which k8s_audit_eventbridge finishes.
        BRIDGE_TRANSPORT = "eventbridge"
        BRIDGE_EVENT_BUS = aws_cloudwatch_event_bus.audit.name
        AUDIT_MAX_EVENTS = tostring(var.audit_max_events) # look-agains per message, at most what k8s_audit takes
        # The Environment status kuberik's rollout-dashboard reads, after the gates.
        ENVIRONMENT_STATUS = tostring(var.environment_status)
        # With rules, a bake result also answers the GitHub Actions jobs held waiting for it.
        PROTECTION_RULES = var.protection_rules
      })
    }

    # The GitHub App's webhook (event: Deployment protection rule) on a public function URL
    # (aws_lambda_function_url.public), capped by its reserved concurrency like github_webhook: answers
    # the GitHub Actions jobs held by the App's deployment protection rule by the upstream bake
    # PROTECTION_RULES names. It reads only GitHub, but the handlers' module makes its Kubernetes client
    # at cold start, so it gets KUBECONFIG_SECRET_ARN as well.
    github_protection_rule = {
      handler               = "functions.aws_lambda.main.github_protection_rule"
      description           = "GitHub App deployment_protection_rule webhooks (signed): answers the held Actions jobs by the upstream bake"
      timeout               = 15
      consumes_audit_queue  = false
      consumes_report_queue = false
      produces_reports      = false
      hands_off_to_bus      = false
      reserved_concurrency  = var.github_protection_rule_reserved_concurrency
      environment = merge(local.github_environment, {
        KUBECONFIG_SECRET_ARN           = data.aws_secretsmanager_secret.this["KUBECONFIG"].arn
        GITHUB_WEBHOOK_SECRET_ARN       = data.aws_secretsmanager_secret.this["GITHUB_WEBHOOK_SECRET"].arn
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        GITHUB_WEBHOOK_MAX_BODY_BYTES   = tostring(var.github_webhook_max_body_bytes)
        PROTECTION_RULES                = var.protection_rules
      })
    }

    # Rollout status events from the reports FIFO queue (aws_lambda_event_source_mapping.reports_queue):
    # records each Rollout's deployments and bake statuses on GitHub. A report that failed (a GitHub
    # rate limit or outage) is answered in batchItemFailures and SQS redelivers it after the visibility
    # timeout; the later reports of that Rollout wait behind it (FIFO message group).
    reporter_sqs = {
      handler               = "functions.aws_lambda.main.reporter_sqs"
      description           = "Rollout status changes from the reports FIFO queue: records deployments and bake statuses on GitHub"
      timeout               = local.reporter_timeout_seconds
      consumes_audit_queue  = false
      consumes_report_queue = true
      produces_reports      = false
      hands_off_to_bus      = false
      reserved_concurrency  = null
      environment = merge(local.github_environment, {
        KUBECONFIG_SECRET_ARN           = data.aws_secretsmanager_secret.this["KUBECONFIG"].arn
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        AUDIT_MAX_EVENTS                = tostring(var.audit_max_events)
        REPORTER_DEADLINE_SECONDS       = tostring(var.reporter_deadline_seconds)
        REPORT_LEASE_SECONDS            = tostring(var.report_lease_seconds)
        ENVIRONMENT_STATUS              = tostring(var.environment_status)
        REPORT_ENVIRONMENT_URL          = var.report_environment_url
      })
    }
    # EKS control-plane audit events from the cluster's CloudWatch Logs audit streams (eks.tf: the
    # subscription filter and the permission for CloudWatch Logs exist only with var.eks_cluster_name;
    # without it the function is never invoked). CloudWatch Logs invokes it asynchronously: a failure
    # raises and Lambda runs the delivery again (aws_lambda_function_event_invoke_config in eks.tf). It
    # hands Rollout status events to the reports queue, as audit_bridge and k8s_audit_http do elsewhere.
    k8s_audit_cloudwatch = {
      handler               = "functions.aws_lambda.main.k8s_audit_cloudwatch"
      description           = "EKS audit events from CloudWatch Logs: ensures and recomputes gates, hands Rollout status changes to the reporter"
      timeout               = var.audit_timeout_seconds
      consumes_audit_queue  = false
      consumes_report_queue = false
      produces_reports      = true
      hands_off_to_bus      = false
      reserved_concurrency  = null
      environment = merge(local.github_environment, {
        KUBECONFIG_SECRET_ARN  = data.aws_secretsmanager_secret.this["KUBECONFIG"].arn
        GITHUB_API_URL         = var.github_api_url
        AUDIT_DEADLINE_SECONDS = tostring(var.audit_deadline_seconds)
        AUDIT_MAX_EVENTS       = tostring(var.audit_max_events)
        KUBE_CONFLICT_RETRIES  = tostring(var.kube_conflict_retries)
        REPORT_TRANSPORT       = "sqs"
        REPORT_SQS_QUEUE_URL   = aws_sqs_queue.reports.id
      })
    }
  }

  # The functions GitHub calls, each on a public function URL (aws_lambda_function_url.public), by the
  # stem of their permissions' statement ids.
  public_functions = {
    github_webhook         = "StagegateGitHubWebhook"
    github_protection_rule = "StagegateGitHubProtectionRule"
  }

  # The audit queue and its dead-letter queue, each with the sid of its policy statement.
  audit_queues = {
    audit = {
      sid = "FromTheAuditRule"
      arn = aws_sqs_queue.audit.arn
      url = aws_sqs_queue.audit.id
    }
    audit_dead_letter = {
      sid = "UndeliverableFromTheAuditRule"
      arn = aws_sqs_queue.audit_dead_letter.arn
      url = aws_sqs_queue.audit_dead_letter.id
    }
  }
}

# --- secrets -----------------------------------------------------------------------------------------

# Only the secrets' metadata (their ARNs) is looked up here, never a value: the functions read the
# values themselves at cold start. A new version of a secret reaches the next cold start.
data "aws_secretsmanager_secret" "this" {
  for_each = local.secret_ids
  arn      = startswith(each.value, "arn:") ? each.value : null
  name     = startswith(each.value, "arn:") ? null : each.value
}

# --- code --------------------------------------------------------------------------------------------

data "archive_file" "code" {
  type        = "zip"
  output_path = "${local.repo_root}/build/terraform/aws-code.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }
}

resource "aws_lambda_layer_version" "dependencies" {
  layer_name               = "${var.name_prefix}-dependencies"
  description              = "requirements-aws.lock for python3.11 x86_64"
  filename                 = local.dependencies_layer_zip
  source_code_hash         = filebase64sha256(local.dependencies_layer_zip)
  compatible_runtimes      = ["python3.11"]
  compatible_architectures = ["x86_64"]
}

# --- audit events: bus -> rule -> queue --------------------------------------------------------------

resource "aws_cloudwatch_event_bus" "audit" {
  name = "${var.name_prefix}-audit"
}

# Exactly what audit_bridge publishes (EVENTBRIDGE_SOURCE / EVENTBRIDGE_DETAIL_TYPE in stagegate/bridge.py).
resource "aws_cloudwatch_event_rule" "audit" {
  name           = "${var.name_prefix}-audit-events"
  description    = "Kubernetes audit events published by stagegate's audit_bridge"
  event_bus_name = aws_cloudwatch_event_bus.audit.name
  event_pattern  = jsonencode({ source = ["stagegate.kubernetes-audit"], "detail-type" = ["Kubernetes audit event"] })
}

resource "aws_sqs_queue" "audit_dead_letter" {
  name                      = "${var.name_prefix}-audit-events-dead-letter"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "audit" {
  name                       = "${var.name_prefix}-audit-events"
  visibility_timeout_seconds = 6 * var.audit_timeout_seconds
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.audit_dead_letter.arn
    maxReceiveCount     = var.audit_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "audit_dead_letter" {
  queue_url = aws_sqs_queue.audit_dead_letter.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.audit.arn]
  })
}

# Only this rule may send to the queues: the queue is its target, the dead-letter queue takes what
# EventBridge could not deliver.
data "aws_iam_policy_document" "audit_queue" {
  for_each = local.audit_queues

  statement {
    sid       = each.value.sid
    actions   = ["sqs:SendMessage"]
    resources = [each.value.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.audit.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "audit_queue" {
  for_each  = local.audit_queues
  queue_url = each.value.url
  policy    = data.aws_iam_policy_document.audit_queue[each.key].json
}

resource "aws_cloudwatch_event_target" "audit_queue" {
  rule           = aws_cloudwatch_event_rule.audit.name
  event_bus_name = aws_cloudwatch_event_bus.audit.name
  target_id      = "audit-queue"
  arn            = aws_sqs_queue.audit.arn

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.audit_dead_letter.arn
  }

  depends_on = [aws_sqs_queue_policy.audit_queue]
}

# --- reports: producers -> FIFO queue -> reporter_sqs -----------------------------------------------

# Each message is one audit Event document about a Rollout status write, MessageGroupId
# <namespace>/<rollout name>: reports of one Rollout are delivered one at a time, in order. Content-based
# deduplication drops a producer's retry of the same event (each audit event has its own auditID).
resource "aws_sqs_queue" "reports_dead_letter" {
  name                      = "${var.name_prefix}-reports-dead-letter.fifo"
  fifo_queue                = true
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "reports" {
  name                        = "${var.name_prefix}-reports.fifo"
  fifo_queue                  = true
  content_based_deduplication = true
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  visibility_timeout_seconds  = 6 * local.reporter_timeout_seconds
  message_retention_seconds   = 345600
  sqs_managed_sse_enabled     = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.reports_dead_letter.arn
    maxReceiveCount     = var.report_max_receive_count
  })

  lifecycle {
    precondition {
      condition     = local.reporter_timeout_seconds <= 900
      error_message = "report_batch_size * reporter_deadline_seconds + 30 must be at most 900 s, the longest a Lambda runs."
    }
  }
}

resource "aws_sqs_queue_redrive_allow_policy" "reports_dead_letter" {
  queue_url = aws_sqs_queue.reports_dead_letter.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.reports.arn]
  })
}

# --- identities --------------------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each           = local.lambdas
  name               = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Each function writes its own logs and reads its own secrets; k8s_audit_eventbridge also consumes the
# audit queue, reporter_sqs the reports queue, k8s_audit_cloudwatch may send to the reports queue
# (the report_producer document, the one audit_bridge and k8s_audit_http get), and github_webhook may
# put events on the audit bus (the bridge_publisher document); nothing else.
data "aws_iam_policy_document" "lambda" {
  for_each = local.lambdas

  source_policy_documents = concat(
    each.value.produces_reports ? [data.aws_iam_policy_document.report_producer.json] : [],
    each.value.hands_off_to_bus ? [data.aws_iam_policy_document.bridge_publisher.json] : [],
  )

  # The secrets it reads at cold start (its *_SECRET_ARN variables), and no other.
  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name, arn in each.value.environment : arn if endswith(name, "_SECRET_ARN")]
  }

  # Secrets encrypted with a customer managed key: decrypt through Secrets Manager only.
  dynamic "statement" {
    for_each = var.secrets_kms_key_arn == null ? [] : [var.secrets_kms_key_arn]
    content {
      sid       = "DecryptOwnSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${var.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.value.consumes_audit_queue ? ["ConsumeTheAuditQueue"] : []
    content {
      sid       = statement.value
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.audit.arn]
    }
  }

  dynamic "statement" {
    for_each = each.value.consumes_report_queue ? ["ConsumeTheReportQueue"] : []
    content {
      sid       = statement.value
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.reports.arn]
    }
  }

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptEnvironment"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.lambdas
  name     = "stagegate"
  role     = aws_iam_role.lambda[each.key].id
  policy   = data.aws_iam_policy_document.lambda[each.key].json
}

# For whoever runs audit_bridge with BRIDGE_TRANSPORT=eventbridge: attach this policy to its identity.
# It may put events on this bus only, and only stagegate's audit events.
data "aws_iam_policy_document" "bridge_publisher" {
  statement {
    sid       = "PublishAuditEvents"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.audit.arn]

    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = ["stagegate.kubernetes-audit"]
    }

    condition {
      test     = "StringEquals"
      variable = "events:detail-type"
      values   = ["Kubernetes audit event"]
    }
  }
}

resource "aws_iam_policy" "bridge_publisher" {
  name        = "${var.name_prefix}-audit-bridge-publisher"
  description = "Lets stagegate's audit_bridge put Kubernetes audit events on the ${aws_cloudwatch_event_bus.audit.name} bus"
  policy      = data.aws_iam_policy_document.bridge_publisher.json
}

# For whoever runs audit_bridge or k8s_audit_http with REPORT_TRANSPORT=sqs: attach this policy to its
# identity. It may send to the reports queue only (the queue has no resource policy: same account).
# k8s_audit_cloudwatch's role includes it (source_policy_documents above).
data "aws_iam_policy_document" "report_producer" {
  statement {
    sid       = "HandOffRolloutReports"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.reports.arn]
  }
}

resource "aws_iam_policy" "report_producer" {
  name        = "${var.name_prefix}-report-producer"
  description = "Lets stagegate's audit_bridge and k8s_audit_http hand Rollout status events to the ${aws_sqs_queue.reports.name} queue"
  policy      = data.aws_iam_policy_document.report_producer.json
}

# --- functions ---------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "lambda" {
  for_each          = local.lambdas
  name              = "/aws/lambda/${var.name_prefix}-${replace(each.key, "_", "-")}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "this" {
  for_each = local.lambdas

  function_name    = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description      = each.value.description
  role             = aws_iam_role.lambda[each.key].arn
  runtime          = "python3.11"
  handler          = each.value.handler
  filename         = data.archive_file.code.output_path
  source_code_hash = data.archive_file.code.output_base64sha256
  layers           = [aws_lambda_layer_version.dependencies.arn]
  architectures    = ["x86_64"]
  memory_size      = 512
  timeout          = each.value.timeout
  kms_key_arn      = var.kms_key_arn

  reserved_concurrent_executions = each.value.reserved_concurrency

  environment {
    variables = each.value.environment
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  depends_on = [aws_iam_role_policy.lambda]

  lifecycle {
    # The GitHub App's settings go together (settings.py stops every function at start otherwise),
    # and only with github_credentials = "app".
    precondition {
      condition = var.github_credentials != "app" || (
        var.github_app_id != null && var.github_app_installation_id != null &&
        var.github_app_private_key_secret_id != null && var.github_app_private_key_secret_id != ""
      )
      error_message = "github_credentials = \"app\" needs all three of github_app_id, github_app_installation_id and github_app_private_key_secret_id (the Secrets Manager secret holding the App's private key)."
    }

    precondition {
      condition     = var.github_credentials == "app" || (var.github_app_id == null && var.github_app_installation_id == null)
      error_message = "github_app_id and github_app_installation_id are set but github_credentials = \"token\": set github_credentials = \"app\" (with github_app_private_key_secret_id) to use the GitHub App, or leave them unset (a token and App credentials together stop every function at start)."
    }

    # With a token, PROTECTION_RULES stops github_webhook and github_protection_rule at start: GitHub
    # lets only the App that owns a deployment protection rule answer it.
    precondition {
      condition     = var.protection_rules == "" || var.github_credentials == "app"
      error_message = "protection_rules needs github_credentials = \"app\" (github_app_id, github_app_installation_id and the private key's secret github_app_private_key_secret_id): a token cannot answer a deployment protection rule."
    }
  }
}

# A retryable failure reports only that message (batchItemFailures); SQS redelivers it, and after
# audit_max_receive_count receives it goes to the dead-letter queue.
resource "aws_lambda_event_source_mapping" "audit_queue" {
  event_source_arn        = aws_sqs_queue.audit.arn
  function_name           = aws_lambda_function.this["k8s_audit_eventbridge"].arn
  batch_size              = var.audit_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.audit_max_concurrency
  }
}

# FIFO: one batch holds at most batch_size messages, in order per message group. reporter_sqs answers the
# failed reports (and the later ones of the same Rollout) in batchItemFailures; SQS redelivers them after
# the visibility timeout, and after report_max_receive_count receives moves them to the dead-letter queue.
resource "aws_lambda_event_source_mapping" "reports_queue" {
  event_source_arn        = aws_sqs_queue.reports.arn
  function_name           = aws_lambda_function.this["reporter_sqs"].arn
  batch_size              = var.report_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.report_max_concurrency
  }
}

# GitHub cannot sign requests with SigV4: the URLs are public and each function verifies
# X-Hub-Signature-256 itself (without GITHUB_WEBHOOK_SECRET it refuses every delivery). moved.tf keeps
# github_webhook's URL (and so the webhook's configuration on GitHub) from before the for_each.
resource "aws_lambda_function_url" "public" {
  for_each           = local.public_functions
  function_name      = aws_lambda_function.this[each.key].function_name
  authorization_type = "NONE"
}

resource "aws_lambda_permission" "public_url" {
  for_each               = local.public_functions
  statement_id           = "${each.value}Url"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this[each.key].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "public_invoke_via_url" {
  for_each                 = local.public_functions
  statement_id             = "${each.value}InvokeViaUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this[each.key].function_name
  principal                = "*"
  invoked_via_function_url = true
}
