"""The CloudFormation custom resource protocol: do the resource's work, then PUT the outcome to the
event's ResponseURL (a presigned S3 URL on AWS). CloudFormation waits for that PUT, so every path,
a failure included, must answer; a FAILED answer fails the resource with the reason it carries.

Create and Update run the work; Delete does nothing, because what these resources produce (an AMI id
read once, an archive written once per input) is either no resource at all or kept data.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

# The resource's properties -> its physical id and the attributes Fn::GetAtt reads.
Work = Callable[[dict[str, Any]], tuple[str, dict[str, str]]]
REASON_LIMIT = 1000  # CloudFormation shows the reason in the stack events; keep it readable
logger = logging.getLogger(__name__)


def respond(event: dict[str, Any], work: Work) -> None:
    status, reason = "SUCCESS", ""
    data: dict[str, str] = {}
    physical_id = event.get("PhysicalResourceId", event["LogicalResourceId"])
    if event["RequestType"] != "Delete":
        try:
            physical_id, data = work(event["ResourceProperties"])
        except Exception as error:
            logger.exception("%s %s failed", event["RequestType"], event["LogicalResourceId"])
            status, reason = "FAILED", f"{type(error).__name__}: {error}"[:REASON_LIMIT]
    _put(
        event["ResponseURL"],
        {
            "Status": status,
            "Reason": reason or f"{event['RequestType']} done",
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        },
    )


def _put(url: str, body: dict[str, Any]) -> None:
    """An empty Content-Type: the presigned URL was signed without one."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an HTTP response URL: {url}")
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": ""})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            logger.info("answered %s for %s: HTTP %s", body["Status"], body["LogicalResourceId"], answer.status)
    except urllib.error.HTTPError as error:
        logger.error("the response URL refused the answer: HTTP %s %s", error.code, error.read()[:1000])
        raise
