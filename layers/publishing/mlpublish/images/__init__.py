"""Image copying: publish one single-platform Docker v2 schema 2 image per container.

``manifests`` decides what is published (pure functions), ``registry`` talks to ECR,
``osinfo`` tells an image's OS from its layers, and ``copy`` holds the preflight and the
three steps the state machine runs: plan, copy a blob, put the manifest.
"""
