#!/usr/bin/python
"""Ansible module: whose an S3 bucket name is (this account's, nobody's, or another account's)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_bucket_owner
short_description: Tell whether an S3 bucket name is this account's, free, or another account's
description:
  - >-
    Bucket names are global across every AWS account. A name this account owns is listed by ListBuckets;
    a name that is not listed is free when HeadBucket answers 404, and another account's otherwise (403,
    or an answer from the other account's bucket). Creating a bucket with another account's name fails
    only at the create call, after whatever came before it; this answers first.
  - Read-only; the same in check mode.
  - With O(setting), another account's name fails the task, naming the setting to change.
version_added: "0.6.0"
author: modelfleet
options:
  name:
    description: The bucket name.
    type: str
    required: true
  setting:
    description:
      - The variable that names the bucket. When set, a name another account holds fails the task before
        the bucket is created, with a message naming it; unset, the module only answers.
    type: str
  note:
    description: Said after the refusal (for example what was not created either).
    type: str
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Whose is the model bucket's name
  modelfleet.fleet.s3_bucket_owner:
    name: modelfleet-prod-artifacts
  register: bucket

- name: Refuse the access-log bucket's name when another account holds it
  modelfleet.fleet.s3_bucket_owner:
    name: modelfleet-prod-alb-logs
    setting: aws_alb_access_logs_bucket
"""

RETURN = r"""
owner:
  description: C(ours) (this account has it), C(nobody) (free to create) or C(another account).
  returned: always
  type: str
"""

import contextlib

with contextlib.suppress(ImportError):  # AnsibleAWSModule says what is missing
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def owner_of(name: str, ours: list[str], head_status: int) -> str:
    """Whose ``name`` is, from this account's bucket names and HeadBucket's status (200 when it answered)."""
    if name in ours:
        return "ours"
    if head_status == 404:
        return "nobody"
    return "another account"


def refusal(name: str, owner: str, setting: str | None, note: str = "") -> str:
    """The message that stops a run whose bucket name another account holds ("" when there is none)."""
    if not setting or owner != "another account":
        return ""
    return (
        f"Refused: the bucket name {name} belongs to another AWS account (bucket names are global), so it was "
        f"not created. Choose another ({setting}; for example with your account id in it).{' ' + note if note else ''}"
    )


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "setting": {"type": "str"},
            "note": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    name: str = module.params["name"]
    s3 = module.client("s3")
    try:
        ours = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    except (BotoCoreError, ClientError) as e:
        module.fail_json_aws(e, msg="Could not list this account's buckets")
    status = 200
    if name not in ours:
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                status = 404
        except BotoCoreError as e:
            module.fail_json_aws(e, msg=f"Could not ask S3 about the bucket {name}")
    owner = owner_of(name, ours, status)
    refused = refusal(name, owner, module.params["setting"], module.params["note"])
    if refused:
        module.fail_json(msg=refused, owner=owner)
    module.exit_json(changed=False, owner=owner)


if __name__ == "__main__":
    main()
