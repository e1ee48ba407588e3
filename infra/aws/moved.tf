# Former addresses of resources that became for_each instances, so that terraform moves an existing
# deployment's resources instead of recreating them: a recreated function URL gets a new address, and
# the GitHub webhook pointing at the old one would deliver nowhere. `terraform plan` shows them as moved.

moved {
  from = aws_lambda_function_url.github_webhook
  to   = aws_lambda_function_url.public["github_webhook"]
}

moved {
  from = aws_lambda_permission.github_webhook_url
  to   = aws_lambda_permission.public_url["github_webhook"]
}

moved {
  from = aws_lambda_permission.github_webhook_invoke_via_url
  to   = aws_lambda_permission.public_invoke_via_url["github_webhook"]
}
