"""Powertools logger, metrics and tracer shared by every runtime (one place, module level)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "refarch"
NAMESPACE = "Refarch"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
