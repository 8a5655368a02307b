"""Parses an OpenMetrics text exposition from stdin with the Prometheus
project's own Python parser (Debian's python3-prometheus-client) and prints
it as JSON: a list of families, each with its name, type, unit, help and
samples. Any line the parser rejects makes it exit non-zero with the
parser's message, so a test sees exactly which line is wrong."""

import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def number(v):
    # JSON has no infinities: the +Inf bucket's le label is a string anyway.
    if math.isinf(v) or math.isnan(v):
        return str(v)
    return v


def main():
    text = sys.stdin.read()
    out = []
    try:
        for family in text_string_to_metric_families(text):
            out.append(
                {
                    "name": family.name,
                    "type": family.type,
                    "unit": family.unit,
                    "help": family.documentation,
                    "samples": [
                        {"name": s.name, "labels": s.labels, "value": number(s.value)}
                        for s in family.samples
                    ],
                }
            )
    except Exception as e:  # the parser raises ValueError and friends
        print(f"not valid OpenMetrics text: {e!r}", file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout)


main()
