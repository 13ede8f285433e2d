"""Checks a log line against CloudWatch's embedded metric format specification, rule by rule.

Specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
A line that breaks any rule is stored as a plain log event and no metric is extracted from it.
"""

from __future__ import annotations

import json
from typing import Any

UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"),
    *("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "None"),
    *("Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second"),
    *("Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second"),
}
MAX_LINE_BYTES = 1024 * 1024
MAX_METRICS = 100
MAX_DIMENSIONS = 30


def parse_emf(line: str) -> dict[str, Any]:
    """The document of a valid EMF line; AssertionError naming the broken rule otherwise."""
    assert len(line.encode()) <= MAX_LINE_BYTES, "an EMF event is at most 1 MB"
    document = json.loads(line)  # the whole log event is one JSON object, nothing before or after it
    assert isinstance(document, dict), "the root node is a JSON object"
    metadata = document["_aws"]
    assert isinstance(metadata["Timestamp"], int) and metadata["Timestamp"] > 1_600_000_000_000, "epoch milliseconds"
    directives = metadata["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives, "CloudWatchMetrics is a non-empty array"
    for directive in directives:
        _check_directive(directive, document)
    return document


def _check_directive(directive: dict[str, Any], document: dict[str, Any]) -> None:
    namespace = directive["Namespace"]
    assert isinstance(namespace, str) and 1 <= len(namespace) <= 255, "Namespace: 1-255 characters"
    assert not namespace.startswith("AWS/"), "AWS/ namespaces are reserved"
    for dimension_set in directive["Dimensions"]:
        assert len(dimension_set) <= MAX_DIMENSIONS, "at most 30 dimensions per set"
        for name in dimension_set:
            assert isinstance(document.get(name), str), f"dimension {name!r} is a string member of the root"
    metrics = directive["Metrics"]
    assert 1 <= len(metrics) <= MAX_METRICS, "1-100 metrics per directive"
    for metric in metrics:
        name = metric["Name"]
        assert metric.get("Unit", "None") in UNITS, f"unit of {name!r}"
        value = document.get(name)
        assert isinstance(value, int | float) and not isinstance(value, bool), f"metric {name!r} is a number"
