"""Parses OpenMetrics text on stdin with prometheus-client's own parser,
which fails on anything the format does not allow; writes the names of
the metric families as a JSON list."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = [family.name for family in text_string_to_metric_families(sys.stdin.read())]
json.dump(families, sys.stdout)
