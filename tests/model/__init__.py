"""A stateful model of the whole decision: random interleavings of Kubernetes and GitHub changes."""
