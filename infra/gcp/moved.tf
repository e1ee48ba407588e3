# Where the resources of an existing deployment went when they became instances of one resource each:
# terraform moves them in the state instead of destroying and recreating them (a recreated subscription
# would lose its unacknowledged messages, a recreated service account its bindings). Once every
# deployment has applied this, the blocks may go. tests/infra/test_terraform.py checks that each `to` is
# an instance declared now and that no `from` is.

# The push subscriptions (local.push_subscriptions) and the Pub/Sub service agent's subscriber grant on
# each.
moved {
  from = google_pubsub_subscription.audit[0]
  to   = google_pubsub_subscription.push["audit"]
}

moved {
  from = google_pubsub_subscription.reports
  to   = google_pubsub_subscription.push["reports"]
}

moved {
  from = google_pubsub_subscription.gke_audit_k8s_audit[0]
  to   = google_pubsub_subscription.push["gke_audit_k8s_audit"]
}

moved {
  from = google_pubsub_subscription.gke_audit_reporter[0]
  to   = google_pubsub_subscription.push["gke_audit_reporter"]
}

moved {
  from = google_pubsub_subscription_iam_member.dead_letter_subscriber[0]
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["audit"]
}

moved {
  from = google_pubsub_subscription_iam_member.reports_dead_letter_subscriber
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["reports"]
}

moved {
  from = google_pubsub_subscription_iam_member.gke_audit_k8s_audit_dead_letter_subscriber[0]
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["gke_audit_k8s_audit"]
}

moved {
  from = google_pubsub_subscription_iam_member.gke_audit_reporter_dead_letter_subscriber[0]
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["gke_audit_reporter"]
}

# What each function Pub/Sub pushes to has (local.push_deliveries): the delivery identity, its invoker
# binding and token creator grant, the dead-letter topic, its subscription and publisher grant.
moved {
  from = google_service_account.audit_delivery
  to   = google_service_account.delivery["k8s_audit"]
}

moved {
  from = google_service_account.report_delivery
  to   = google_service_account.delivery["reporter"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.audit_delivery_invoker
  to   = google_cloud_run_v2_service_iam_member.delivery_invoker["k8s_audit"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.report_delivery_invoker
  to   = google_cloud_run_v2_service_iam_member.delivery_invoker["reporter"]
}

moved {
  from = google_service_account_iam_member.pubsub_token_creator
  to   = google_service_account_iam_member.pubsub_token_creator["k8s_audit"]
}

moved {
  from = google_service_account_iam_member.pubsub_report_token_creator
  to   = google_service_account_iam_member.pubsub_token_creator["reporter"]
}

moved {
  from = google_pubsub_topic.audit_dead_letter
  to   = google_pubsub_topic.dead_letter["k8s_audit"]
}

moved {
  from = google_pubsub_topic.reports_dead_letter
  to   = google_pubsub_topic.dead_letter["reporter"]
}

moved {
  from = google_pubsub_subscription.audit_dead_letter
  to   = google_pubsub_subscription.dead_letter["k8s_audit"]
}

moved {
  from = google_pubsub_subscription.reports_dead_letter
  to   = google_pubsub_subscription.dead_letter["reporter"]
}

moved {
  from = google_pubsub_topic_iam_member.dead_letter_publisher
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["k8s_audit"]
}

moved {
  from = google_pubsub_topic_iam_member.reports_dead_letter_publisher
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["reporter"]
}

# The audit topic's publisher grant, now one per publisher (github_webhook hands on unfinished work).
moved {
  from = google_pubsub_topic_iam_member.bridge_publisher
  to   = google_pubsub_topic_iam_member.bridge_publisher["audit_bridge"]
}
