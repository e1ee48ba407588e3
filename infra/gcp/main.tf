# stagegate on Google Cloud: the functions as Cloud Run functions (2nd gen), the audit topic they
# share, the reports topic that carries Rollout changes to the reporter, the secrets they read, and the
# scheduled resync.
#
# Names the code depends on (entry points, GOOGLE_FUNCTION_SOURCE paths, environment variable names)
# are written out literally, so tests/infra/test_terraform.py can check them against the code
# without running terraform.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  repo_root = abspath("${path.module}/../..")

  # What the functions import, and nothing else: tests/, .venv/, bench/, scripts/ stay out.
  # pyproject.toml and README.md are there because requirements.txt installs the project itself.
  source_files = sort(setunion(
    fileset(local.repo_root, "{functions,shared,stagegate}/**/*.py"),
    fileset(local.repo_root, "{shared,stagegate}/py.typed"),
    ["pyproject.toml", "README.md"],
  ))

  # The kubeconfig secret is mounted as a file; KUBECONFIG points at it.
  kubeconfig_dir  = "/etc/secrets/kubeconfig"
  kubeconfig_file = "config"
  kubeconfig_path = "${local.kubeconfig_dir}/${local.kubeconfig_file}"

  namespaces = join(",", var.namespaces)

  # The reporter's function timeout and its push subscription's ack deadline: the report's own
  # deadline (REPORTER_DEADLINE_SECONDS) plus room to answer, so Pub/Sub never redelivers a report
  # that is still running.
  reporter_timeout_seconds = var.reporter_deadline_seconds + 30

  # The secrets of the GitHub credentials every function that reads GitHub gets (var.github_credentials):
  # a token, or the GitHub App's id, private key and installation id. protection_rules needs the App:
  # only the App that owns a deployment protection rule may answer it.
  github_secrets = {
    token = ["GITHUB_TOKEN"]
    app   = ["GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"]
  }[var.github_credentials]

  # Which secret each function reads (the KUBECONFIG one as a mounted file, the others as variables).
  # Each function's service account may access exactly these; the test checks this map against the
  # function resources below. k8s_audit_http gets no GitHub credentials: it sits in the apiserver's
  # request path, so Rollout changes reaching it are ignored there and recomputed by k8s_audit (bridged)
  # and resync instead of costing a GitHub read per Rollout status write. resync_http needs no token:
  # Cloud Run checks the scheduler's OIDC identity before a request reaches it (RESYNC_AUTH=platform).
  # The reporter writes deployments and statuses with the GitHub credentials (Deployments: read and
  # write) and holds a per-Rollout Lease through the KUBECONFIG identity. github_protection_rule reads
  # nothing from Kubernetes: no KUBECONFIG.
  function_secrets = {
    k8s_audit_http         = ["AUDIT_WEBHOOK_TOKEN", "KUBECONFIG"]
    k8s_audit              = concat(local.github_secrets, ["KUBECONFIG"])
    github_webhook         = concat(["GITHUB_WEBHOOK_SECRET"], local.github_secrets, ["KUBECONFIG"])
    resync_http            = concat(local.github_secrets, ["KUBECONFIG"])
    audit_bridge           = ["AUDIT_WEBHOOK_TOKEN"]
    reporter               = concat(local.github_secrets, ["KUBECONFIG"])
    github_protection_rule = concat(["GITHUB_WEBHOOK_SECRET"], local.github_secrets)
  }

  # Service account ids are <prefix>-<this>, at most 30 characters: the function's name with dashes,
  # or a shorter one where that is too long.
  account_ids = {
    github_protection_rule = "protection-rule"
  }

  # The functions: one google_cloudfunctions2_function.this each. Entry points, source files and
  # variable names are the code's; secret_environment are Secret Manager secrets set as variables,
  # kubeconfig mounts the KUBECONFIG secret as a file. Together they are local.function_secrets[name].
  functions = {
    k8s_audit_http = {
      entry_point         = "k8s_audit_http"
      source              = "functions/k8s_audit/main.py"
      description         = "kube-apiserver audit webhook (blocking mode): creates the blocking gate before the Environment's creation is acknowledged"
      min_instances       = var.audit_http_min_instances
      max_instances       = var.max_instances
      timeout_seconds     = 60
      ingress             = "ALLOW_ALL"
      audit_topic_trigger = false
      kubeconfig          = true
      secret_environment  = ["AUDIT_WEBHOOK_TOKEN"]
      # Rollout status events go on to the reporter through the reports topic (REPORT_*).
      environment = {
        KUBECONFIG             = local.kubeconfig_path
        AUDIT_DEADLINE_SECONDS = tostring(var.audit_deadline_seconds)
        AUDIT_MAX_BODY_BYTES   = tostring(var.audit_max_body_bytes)
        AUDIT_MAX_EVENTS       = tostring(var.audit_max_events)
        KUBE_CONFLICT_RETRIES  = tostring(var.kube_conflict_retries)
        REPORT_TRANSPORT       = "pubsub"
        REPORT_PUBSUB_TOPIC    = google_pubsub_topic.reports.id
      }
    }

    # With k8s_audit_delivery = "eventarc" it gets its own Pub/Sub trigger on the audit topic;
    # otherwise the push subscription below delivers (ordered, with a dead-letter topic).
    k8s_audit = {
      entry_point         = "k8s_audit"
      source              = "functions/k8s_audit/main.py"
      description         = "Audit events from Pub/Sub (CloudEvent): raises on retryable failures so the message is redelivered"
      min_instances       = null
      max_instances       = var.max_instances
      timeout_seconds     = 60
      ingress             = "ALLOW_INTERNAL_ONLY"
      audit_topic_trigger = var.k8s_audit_delivery == "eventarc"
      kubeconfig          = true
      secret_environment  = local.github_secrets
      environment = {
        KUBECONFIG             = local.kubeconfig_path
        GITHUB_API_URL         = var.github_api_url
        AUDIT_DEADLINE_SECONDS = tostring(var.audit_deadline_seconds)
        AUDIT_MAX_EVENTS       = tostring(var.audit_max_events)
        KUBE_CONFLICT_RETRIES  = tostring(var.kube_conflict_retries)
      }
    }

    github_webhook = {
      entry_point         = "github_webhook"
      source              = "functions/github_webhook/main.py"
      description         = "GitHub deployment_status webhooks (signed): recomputes the downstream gates"
      min_instances       = null
      max_instances       = var.max_instances
      timeout_seconds     = 60
      ingress             = "ALLOW_ALL"
      audit_topic_trigger = false
      kubeconfig          = true
      secret_environment  = concat(["GITHUB_WEBHOOK_SECRET"], local.github_secrets)
      # A revocation it cannot finish before its deadline (GitHub waits 10 s and never redelivers) is
      # handed to the audit topic as "look again at Rollout X" events, which k8s_audit finishes. With
      # PROTECTION_RULES, a bake result also answers the GitHub Actions jobs held waiting for it.
      environment = {
        KUBECONFIG                      = local.kubeconfig_path
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        GITHUB_WEBHOOK_MAX_BODY_BYTES   = tostring(var.github_webhook_max_body_bytes)
        KUBE_CONFLICT_RETRIES           = tostring(var.kube_conflict_retries)
        STAGEGATE_NAMESPACES            = local.namespaces
        BRIDGE_TRANSPORT                = "pubsub"
        BRIDGE_PUBSUB_TOPIC             = google_pubsub_topic.audit.id
        AUDIT_MAX_EVENTS                = tostring(var.audit_max_events) # look-agains per message, at most what k8s_audit takes
        ENVIRONMENT_STATUS              = tostring(var.environment_status)
        PROTECTION_RULES                = var.protection_rules
      }
    }

    # Internal-only ingress: Cloud Scheduler in the same project calling the run.app URL counts as internal.
    # With resync_reports it also records every governed Rollout's history on GitHub (RESYNC_REPORTS),
    # healing reports the reporter missed.
    # Invocable only by the scheduler's service account (google_cloud_run_v2_service_iam_member.resync_scheduler):
    # Cloud Run checks the job's OIDC token, so the function checks no token of its own (RESYNC_AUTH=platform).
    # With PROTECTION_RULES it also answers the held GitHub Actions jobs whose upstream bake has decided
    # (what a lost delivery or bake result left waiting).
    resync_http = {
      entry_point         = "resync_http"
      source              = "functions/resync/main.py"
      description         = "Scheduled recompute of every gate (Cloud Scheduler with its OIDC identity)"
      min_instances       = null
      max_instances       = 1
      timeout_seconds     = 300
      ingress             = "ALLOW_INTERNAL_ONLY"
      audit_topic_trigger = false
      kubeconfig          = true
      secret_environment  = local.github_secrets
      environment = {
        RESYNC_AUTH                     = "platform"
        RESYNC_REPORTS                  = tostring(var.resync_reports)
        KUBECONFIG                      = local.kubeconfig_path
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        KUBE_CONFLICT_RETRIES           = tostring(var.kube_conflict_retries)
        STAGEGATE_NAMESPACES            = local.namespaces
        REPORTER_DEADLINE_SECONDS       = tostring(var.reporter_deadline_seconds)
        REPORT_LEASE_SECONDS            = tostring(var.report_lease_seconds)
        ENVIRONMENT_STATUS              = tostring(var.environment_status)
        REPORT_ENVIRONMENT_URL          = var.report_environment_url
        PROTECTION_RULES                = var.protection_rules
      }
    }

    audit_bridge = {
      entry_point         = "audit_bridge"
      source              = "functions/audit_bridge/main.py"
      description         = "kube-apiserver audit webhook (batch mode): publishes the relevant events to the audit topic"
      min_instances       = null
      max_instances       = var.max_instances
      timeout_seconds     = 60
      ingress             = "ALLOW_ALL"
      audit_topic_trigger = false
      kubeconfig          = false
      secret_environment  = ["AUDIT_WEBHOOK_TOKEN"]
      # Relevant events go to the audit topic; Rollout status events also to the reports topic (REPORT_*).
      environment = {
        BRIDGE_TRANSPORT       = "pubsub"
        BRIDGE_PUBSUB_TOPIC    = google_pubsub_topic.audit.id
        AUDIT_DEADLINE_SECONDS = tostring(var.audit_deadline_seconds)
        AUDIT_MAX_BODY_BYTES   = tostring(var.audit_max_body_bytes)
        REPORT_TRANSPORT       = "pubsub"
        REPORT_PUBSUB_TOPIC    = google_pubsub_topic.reports.id
      }
    }

    # Records each Rollout's history (deployments and bake statuses) on GitHub. Fed by the ordered push
    # subscription google_pubsub_subscription.push["reports"] (one audit Event per message, ordering key
    # namespace/name); a GitHub rate limit or outage raises, and Pub/Sub redelivers with exponential
    # backoff. Internal-only, invocable by its delivery service account only.
    reporter = {
      entry_point         = "reporter"
      source              = "functions/reporter/main.py"
      description         = "Rollout status changes from the reports topic (CloudEvent): records deployments and bake statuses on GitHub"
      min_instances       = null
      max_instances       = var.max_instances
      timeout_seconds     = local.reporter_timeout_seconds
      ingress             = "ALLOW_INTERNAL_ONLY"
      audit_topic_trigger = false
      kubeconfig          = true
      secret_environment  = local.github_secrets
      environment = {
        KUBECONFIG                      = local.kubeconfig_path
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        AUDIT_MAX_BODY_BYTES            = tostring(var.audit_max_body_bytes)
        AUDIT_MAX_EVENTS                = tostring(var.audit_max_events)
        REPORTER_DEADLINE_SECONDS       = tostring(var.reporter_deadline_seconds)
        REPORT_LEASE_SECONDS            = tostring(var.report_lease_seconds)
        ENVIRONMENT_STATUS              = tostring(var.environment_status)
        REPORT_ENVIRONMENT_URL          = var.report_environment_url
      }
    }

    # The GitHub App's webhook (event: Deployment protection rule): approves or rejects each GitHub
    # Actions job held by the App's deployment protection rule by the upstream bake PROTECTION_RULES
    # names, or reports what it waits for. Public like github_webhook (the delivery is signed); it only
    # reads and answers GitHub, with the App's credentials (github_credentials = "app").
    github_protection_rule = {
      entry_point         = "github_protection_rule"
      source              = "functions/github_protection_rule/main.py"
      description         = "GitHub App deployment_protection_rule webhooks (signed): answers the held Actions jobs by the upstream bake"
      min_instances       = null
      max_instances       = var.max_instances
      timeout_seconds     = 60
      ingress             = "ALLOW_ALL"
      audit_topic_trigger = false
      kubeconfig          = false
      secret_environment  = concat(["GITHUB_WEBHOOK_SECRET"], local.github_secrets)
      environment = {
        GITHUB_API_URL                  = var.github_api_url
        GITHUB_WEBHOOK_DEADLINE_SECONDS = tostring(var.github_webhook_deadline_seconds)
        GITHUB_WEBHOOK_MAX_BODY_BYTES   = tostring(var.github_webhook_max_body_bytes)
        PROTECTION_RULES                = var.protection_rules
      }
    }
  }

  secret_grants = merge([
    for function, secrets in local.function_secrets : {
      for secret in secrets : "${function}/${secret}" => { function = function, secret = secret }
    }
  ]...)

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# --- source ------------------------------------------------------------------------------------------

# The repository's code as one zip for every function. Cloud Run functions build it with Google's
# Python buildpack: requirements.txt (the pinned requirements-gcp.lock: Google Cloud's SDK only, plus the project itself so that
# `shared` and `stagegate` are installed packages) and GOOGLE_FUNCTION_SOURCE naming the entry file.
data "archive_file" "source" {
  type        = "zip"
  output_path = "${local.repo_root}/build/terraform/gcp-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }

  source {
    filename = "requirements.txt"
    content  = "${file("${local.repo_root}/requirements-gcp.lock")}\n# the project itself: shared/ and stagegate/\n.\n"
  }
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes every code change a new object, hence a new build.
  name   = "stagegate-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# --- secrets -----------------------------------------------------------------------------------------

# The secrets' values are not in Terraform (nor in its state): add them with
# `gcloud secrets versions add` (see README). One for each secret some function reads, and no other.
resource "google_secret_manager_secret" "this" {
  for_each  = toset(flatten(values(local.function_secrets)))
  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"

  replication {
    auto {}
  }
}

# --- identities --------------------------------------------------------------------------------------

# One service account per function. None has a project-level role: each may read its own secrets,
# the bridge may publish to the audit topic, and the bridge and k8s_audit_http to the reports topic.
# Nothing else.
resource "google_service_account" "function" {
  for_each     = local.function_secrets
  account_id   = "${var.name_prefix}-${lookup(local.account_ids, each.key, replace(each.key, "_", "-"))}"
  display_name = "stagegate ${each.key}"
}

resource "google_secret_manager_secret_iam_member" "access" {
  for_each  = local.secret_grants
  secret_id = google_secret_manager_secret.this[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# audit_bridge publishes the audit events it keeps; github_webhook hands on what a revocation could not
# reach before its deadline.
resource "google_pubsub_topic_iam_member" "bridge_publisher" {
  for_each = {
    audit_bridge   = google_service_account.function["audit_bridge"].member
    github_webhook = google_service_account.function["github_webhook"].member
  }
  topic  = google_pubsub_topic.audit.id
  role   = "roles/pubsub.publisher"
  member = each.value
}

# k8s_audit_http and audit_bridge hand Rollout status events to the reporter through the reports topic.
resource "google_pubsub_topic_iam_member" "report_publisher" {
  for_each = {
    k8s_audit_http = google_service_account.function["k8s_audit_http"].member
    audit_bridge   = google_service_account.function["audit_bridge"].member
  }
  topic  = google_pubsub_topic.reports.id
  role   = "roles/pubsub.publisher"
  member = each.value
}

# The kube-apiserver and GitHub present no Google identity: these four are invocable by anyone at
# the Cloud Run level and authenticate every request themselves (bearer token or webhook signature;
# without the secret configured they refuse everything). resync_http and k8s_audit are not among them.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = {
    k8s_audit_http         = google_cloudfunctions2_function.this["k8s_audit_http"].service_config[0].service
    github_webhook         = google_cloudfunctions2_function.this["github_webhook"].service_config[0].service
    audit_bridge           = google_cloudfunctions2_function.this["audit_bridge"].service_config[0].service
    github_protection_rule = google_cloudfunctions2_function.this["github_protection_rule"].service_config[0].service
  }
  location = var.region
  name     = each.value
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Cloud Scheduler calls resync_http with an OIDC token of this service account; Cloud Run lets only
# it through, so no static token is stored anywhere. It may invoke resync_http and nothing else.
resource "google_service_account" "resync_scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "stagegate Cloud Scheduler -> resync_http"
}

resource "google_cloud_run_v2_service_iam_member" "resync_scheduler" {
  location = var.region
  name     = google_cloudfunctions2_function.this["resync_http"].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.resync_scheduler.member
}

# --- topics ------------------------------------------------------------------------------------------

# audit_bridge publishes here (one message per audit event, ordering key namespace/name); k8s_audit
# consumes it.
resource "google_pubsub_topic" "audit" {
  name                       = "${var.name_prefix}-audit-events"
  message_retention_duration = "86400s"
}

# k8s_audit_http and audit_bridge publish each Rollout status event here (REPORT_TRANSPORT=pubsub, one
# audit Event per message, ordering key namespace/name); the reporter consumes it.
resource "google_pubsub_topic" "reports" {
  name                       = "${var.name_prefix}-reports"
  message_retention_duration = "86400s"
}

# --- push delivery: topics -> functions --------------------------------------------------------------

locals {
  # Each function Pub/Sub pushes to, and how: as which identity (account_id; it may invoke that function
  # and nothing else), to which dead-letter topic after max_delivery_attempts, with which
  # acknowledgement deadline and exponential backoff between retries. Every push subscription to the
  # function (local.push_subscriptions) delivers so.
  push_deliveries = {
    # The identity is also the one the Eventarc trigger delivers as (k8s_audit_delivery = "eventarc").
    k8s_audit = {
      account_id            = "audit-delivery"
      display_name          = "stagegate audit topic -> k8s_audit"
      dead_letter_name      = "audit-events-dead-letter"
      ack_deadline_seconds  = 60
      max_delivery_attempts = var.audit_max_delivery_attempts
      minimum_backoff       = var.audit_minimum_backoff
      maximum_backoff       = var.audit_maximum_backoff
    }

    # A GitHub secondary rate limit or outage is retried by Pub/Sub, with exponential backoff between
    # report_minimum_backoff and report_maximum_backoff; the reporter never sleeps. The ack deadline is
    # the reporter's timeout: Pub/Sub never redelivers a report that is still running.
    reporter = {
      account_id            = "report-delivery"
      display_name          = "stagegate reports topic -> reporter"
      dead_letter_name      = "reports-dead-letter"
      ack_deadline_seconds  = local.reporter_timeout_seconds
      max_delivery_attempts = var.report_max_delivery_attempts
      minimum_backoff       = var.report_minimum_backoff
      maximum_backoff       = var.report_maximum_backoff
    }
  }

  # The push subscriptions, one google_pubsub_subscription.push each where enabled: which topic goes to
  # which function (delivered as local.push_deliveries[function] says), and whether in order.
  push_subscriptions = {
    # With k8s_audit_delivery = "push_subscription" (otherwise k8s_audit has an Eventarc trigger).
    # Ordered: the bridge publishes with ordering key namespace/name.
    audit = {
      enabled  = var.k8s_audit_delivery == "push_subscription"
      name     = "${var.name_prefix}-audit-events-k8s-audit"
      topic    = google_pubsub_topic.audit.id
      function = "k8s_audit"
      ordered  = true
    }

    # Ordered: reports of one Rollout arrive in publish order, and a failing one holds back the later
    # ones of that Rollout (not the others) until it succeeds or is dead-lettered.
    reports = {
      enabled  = true
      name     = "${var.name_prefix}-reports-reporter"
      topic    = google_pubsub_topic.reports.id
      function = "reporter"
      ordered  = true
    }

    # GKE (gke_audit_logs.tf): every entry of the sink's topic to k8s_audit. An Environment write gets
    # its gate, a Rollout status write recomputes the gates of the Environments governing it; a
    # dead-lettered LogEntry is replayed to k8s_audit like any audit message. Unordered: a sink sets no
    # ordering keys.
    gke_audit_k8s_audit = {
      enabled  = var.gke_audit_logs
      name     = "${var.name_prefix}-gke-audit-k8s-audit"
      topic    = one(google_pubsub_topic.gke_audit[*].id)
      function = "k8s_audit"
      ordered  = false
    }

    # GKE: every entry to the reporter too. A subscription filter sees only message attributes, and a
    # sink's messages carry none that name the object, so the reporter gets the Environment entries as
    # well and ignores them (it reports only routed Rollout status writes; no API call for the others).
    # Unordered: a sink sets no ordering keys; the per-Rollout Lease serializes reports.
    gke_audit_reporter = {
      enabled  = var.gke_audit_logs
      name     = "${var.name_prefix}-gke-audit-reporter"
      topic    = one(google_pubsub_topic.gke_audit[*].id)
      function = "reporter"
      ordered  = false
    }
  }
}

# The identity Pub/Sub delivers to each function as (push subscription OIDC token, or k8s_audit's
# Eventarc trigger): it may invoke that function and nothing else.
resource "google_service_account" "delivery" {
  for_each     = local.push_deliveries
  account_id   = "${var.name_prefix}-${each.value.account_id}"
  display_name = each.value.display_name
}

resource "google_cloud_run_v2_service_iam_member" "delivery_invoker" {
  for_each = local.push_deliveries
  location = var.region
  name     = google_cloudfunctions2_function.this[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.delivery[each.key].member
}

# Pub/Sub mints the push OIDC tokens as the delivery identities (needed on projects created before
# 2021-04-08).
resource "google_service_account_iam_member" "pubsub_token_creator" {
  for_each           = local.push_deliveries
  service_account_id = google_service_account.delivery[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.push_deliveries
  name     = "${var.name_prefix}-${each.value.dead_letter_name}"
}

# Messages that exhausted their deliveries are kept here for a week to be inspected or replayed (for
# reports, the scheduled resync records what they would have).
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.push_deliveries
  name                       = "${var.name_prefix}-${each.value.dead_letter_name}"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering needs the Pub/Sub service agent to publish to the dead-letter topics and to
# acknowledge on the source subscriptions (dead_letter_subscriber below).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.push_deliveries
  topic    = google_pubsub_topic.dead_letter[each.key].id
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_service_agent
}

resource "google_pubsub_subscription" "push" {
  for_each = {
    for name, subscription in local.push_subscriptions :
    name => merge(local.push_deliveries[subscription.function], subscription) if subscription.enabled
  }

  name                       = each.value.name
  topic                      = each.value.topic
  enable_message_ordering    = each.value.ordered
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    # The topic in the path lets functions-framework name the CloudEvent's source.
    push_endpoint = "${google_cloudfunctions2_function.this[each.value.function].service_config[0].uri}/${each.value.topic}"
    oidc_token {
      service_account_email = google_service_account.delivery[each.value.function].email
      audience              = google_cloudfunctions2_function.this[each.value.function].service_config[0].uri
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.function].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  expiration_policy {
    ttl = ""
  }

  # Pushes start once the delivery identities may invoke their functions.
  depends_on = [google_cloud_run_v2_service_iam_member.delivery_invoker]
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = google_pubsub_subscription.push
  subscription = each.value.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- functions ---------------------------------------------------------------------------------------

# Every function runs the same source archive with the same runtime; what differs is in
# local.functions (see the "functions" locals above).
resource "google_cloudfunctions2_function" "this" {
  for_each = local.functions

  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location    = var.region
  description = each.value.description

  build_config {
    runtime         = "python311"
    entry_point     = each.value.entry_point
    service_account = var.build_service_account
    environment_variables = {
      GOOGLE_FUNCTION_SOURCE = each.value.source
    }
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.function[each.key].email
    min_instance_count             = each.value.min_instances
    max_instance_count             = each.value.max_instances
    available_memory               = "512Mi"
    timeout_seconds                = each.value.timeout_seconds
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
    environment_variables          = each.value.environment

    dynamic "secret_environment_variables" {
      for_each = each.value.secret_environment
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.this[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }

    # KUBECONFIG is a file: the secret is mounted and the KUBECONFIG variable points at it.
    dynamic "secret_volumes" {
      for_each = each.value.kubeconfig ? ["KUBECONFIG"] : []
      content {
        mount_path = local.kubeconfig_dir
        project_id = var.project_id
        secret     = google_secret_manager_secret.this[secret_volumes.value].secret_id
        versions {
          version = "latest"
          path    = local.kubeconfig_file
        }
      }
    }
  }

  # A Pub/Sub trigger on the audit topic (k8s_audit with k8s_audit_delivery = "eventarc").
  dynamic "event_trigger" {
    for_each = each.value.audit_topic_trigger ? ["eventarc"] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = google_pubsub_topic.audit.id
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.delivery["k8s_audit"].email
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.access,
    google_pubsub_topic_iam_member.bridge_publisher, # audit_bridge publishes from its first request
    google_pubsub_topic_iam_member.report_publisher, # so do k8s_audit_http and audit_bridge to reports
  ]

  lifecycle {
    # With a token, PROTECTION_RULES stops github_webhook, resync_http and github_protection_rule at
    # start: GitHub lets only the App that owns a deployment protection rule answer it.
    precondition {
      condition     = var.protection_rules == "" || var.github_credentials == "app"
      error_message = "protection_rules needs github_credentials = \"app\" (the GitHub App's secrets): a token cannot answer a deployment protection rule."
    }
  }
}

# --- schedule ----------------------------------------------------------------------------------------

# The job authenticates with an OIDC token of google_service_account.resync_scheduler (audience: the
# function's URL), which Cloud Run checks against its invoker binding; resync_http runs with
# RESYNC_AUTH=platform and checks nothing itself. Whoever applies this needs iam.serviceAccounts.actAs
# on that service account (they created it, so they have it).
resource "google_cloud_scheduler_job" "resync" {
  name             = "${var.name_prefix}-resync"
  region           = var.region
  description      = "Recompute every stagegate gate (GitHub does not redeliver failed webhooks)"
  schedule         = var.resync_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "320s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.this["resync_http"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.resync_scheduler.email
      audience              = google_cloudfunctions2_function.this["resync_http"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.resync_scheduler]
}
