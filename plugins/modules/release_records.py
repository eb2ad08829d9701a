#!/usr/bin/python
"""Ansible module: the newest entries of the release record in the model bucket, read in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_records
short_description: Read the newest entries of the release record kept in the model bucket
description:
  - >-
    On AWS every release, rollback and scale writes one JSON object under O(prefix) in the model bucket
    (C(releases/<time>-<image>.json)), so that every controller reads the same record. This reads the
    newest O(limit) of them, oldest first, in one call: one listing and one GET per entry, in one process.
  - A bucket that does not exist yet holds no record (an empty list, not an error).
  - Read-only; the same in check mode.
version_added: "0.7.0"
author: modelfleet
options:
  bucket:
    description: The model bucket.
    type: str
    required: true
  prefix:
    description: Where the entries are (every key under it ending in C(.json) is one).
    type: str
    default: releases/
  limit:
    description: How many of the newest entries to read (0 reads every one).
    type: int
    default: 50
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the release record
  modelfleet.fleet.release_records:
    bucket: modelfleet-prod-artifacts
    limit: 50
  register: record
"""

RETURN = r"""
records:
  description: The entries, oldest first (their keys sort by the time they were written).
  returned: always
  type: list
  elements: dict
keys:
  description: The keys read, in the same order.
  returned: always
  type: list
  elements: str
"""

import contextlib
import json
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def newest_keys(keys: list[str], prefix: str, limit: int) -> list[str]:
    """The entries' keys among ``keys``, sorted, the newest ``limit`` of them (every one when 0)."""
    entries = sorted(
        key for key in keys if key.startswith(prefix) and key.endswith(".json") and key != prefix + ".json"
    )
    return entries[-limit:] if limit > 0 else entries


def list_keys(client: Any, bucket: str, prefix: str, page_size: int = 1000) -> list[str]:
    """Every key under ``prefix`` ([] when the bucket does not exist)."""
    keys: list[str] = []
    token: dict[str, str] = {}
    while True:
        try:
            page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=page_size, **token)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return []
            raise
        keys += [item["Key"] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = {"ContinuationToken": page["NextContinuationToken"]}


def read_records(client: Any, bucket: str, prefix: str, limit: int, page_size: int = 1000) -> tuple[list[str], list]:
    """The newest ``limit`` entries under ``prefix``, oldest first, with their keys."""
    keys = newest_keys(list_keys(client, bucket, prefix, page_size), prefix, limit)
    records = [json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys]
    return keys, records


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "bucket": {"type": "str", "required": True},
            "prefix": {"type": "str", "default": "releases/"},
            "limit": {"type": "int", "default": 50},
        },
        supports_check_mode=True,
    )
    bucket, prefix = module.params["bucket"], module.params["prefix"]
    try:
        keys, records = read_records(module.client("s3"), bucket, prefix, module.params["limit"])
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not read the release record under s3://{bucket}/{prefix}")
    except ValueError as e:  # an entry that is not JSON
        module.fail_json(msg=f"The release record under s3://{bucket}/{prefix} holds an entry that is not JSON: {e}")
    module.exit_json(changed=False, keys=keys, records=records)


if __name__ == "__main__":
    main()
