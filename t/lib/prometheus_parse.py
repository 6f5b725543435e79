"""Parses the Prometheus text exposition format on stdin with the reference
parser (prometheus_client.parser, from PyPI; `make setup` installs it in
build/venv) and prints what it understood as JSON:

  [{"name": ..., "type": ..., "help": ...,
    "samples": [{"name": ..., "labels": {...}, "value": ...}]}]

Exits non-zero with the parser's error on malformed input."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "help": family.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
    })
json.dump(families, sys.stdout)
