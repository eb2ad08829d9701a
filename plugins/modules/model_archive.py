#!/usr/bin/python
"""Ansible module: unpack a model artifact archive, refusing anything but the files its metadata lists."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_archive
short_description: Unpack a model artifact archive safely, or refuse it
description:
  - >-
    Unpacks a model artifact archive (a gzip-compressed tar of one top directory holding
    C(metadata.json) and the files its C(files) map lists) into O(dest), without the top directory.
  - >-
    The archive is read twice with Python's tarfile and never with tar(1): the first pass checks every
    entry and reads C(metadata.json), the second writes. An archive is refused, naming the entry and the
    reason, and nothing is written to O(dest), when it holds a symbolic or hard link, a device or a FIFO,
    an absolute path or a C(..) component, an entry outside its single top directory, a subdirectory, an
    entry other than C(metadata.json) and the files metadata.json lists (or lacks one of them), an entry
    twice, more than O(max_members) entries or more than O(max_bytes) bytes (also counted on the
    decompressed stream, so that a compression bomb is cut off), when its sha256 is not O(sha256), or
    when metadata.json's C(name), C(version) or file names are not plain names.
  - >-
    Files are written with mode 0644 into a temporary directory beside O(dest) that is then renamed into
    place. When O(dest) already holds exactly these files with the same bytes nothing is written
    (C(changed=false)); a O(dest) with other content is replaced.
  - >-
    The check of O(dest) and the unpack and rename hold an exclusive lock (flock(2)) on a file
    C(.<name>.lock) beside O(dest), so that runs unpacking into the same O(dest) at once (CI lanes sharing
    a cache) take turns: the later one finds O(dest) already holding the archive (C(changed=false)).
  - The same name rules as the app's (app/src/model_service/artifact.py, C(SAFE_NAME)).
version_added: "0.7.0"
author: modelfleet
options:
  src:
    description: The archive (C(.tar.gz) or C(.tgz)) on the machine the module runs on.
    type: path
    required: true
  dest:
    description: >-
      The directory to unpack into: it receives the files of the archive's top directory. Its parent
      is created if missing.
    type: path
    required: true
  sha256:
    description: The archive's expected sha256 (hex); an archive with another digest is refused. Empty is not checked.
    type: str
    default: ""
  max_bytes:
    description: >-
      The most bytes the archive's files may hold together, and (with a margin for the tar headers)
      decompress to.
    type: int
    default: 536870912
  max_members:
    description: The most entries (files and directories) the archive may hold.
    type: int
    default: 64
notes:
  - Supports check mode, in which the archive is checked and nothing is written.
"""

EXAMPLES = r"""
- name: Unpack the artifact archive fetched from S3, pinned to the digest stored with the object
  modelfleet.fleet.model_archive:
    src: /var/cache/models/demo-classifier-1.0.0.tar.gz
    dest: /var/cache/models/demo-classifier-1.0.0-0123456789ab
    sha256: "{{ stored_sha256 }}"
  register: unpacked
"""

RETURN = r"""
sha256:
  description: The archive's sha256.
  returned: success
  type: str
metadata:
  description: The archive's metadata.json.
  returned: success
  type: dict
files:
  description: The names of the files in O(dest), C(metadata.json) first.
  returned: success
  type: list
  elements: str
dest:
  description: The directory unpacked into.
  returned: always
  type: str
"""

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ansible.module_utils.basic import AnsibleModule

METADATA_FILE = "metadata.json"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 64
# A name that is safe as one path component: the same rule as SAFE_NAME in app/src/model_service/artifact.py
# (and _model_service_safe_name in roles/model_service/vars/main.yml); change them together.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
SAFE_NAME_RULE = "1 to 64 letters, digits, '.', '_', '+' or '-', starting with a letter or a digit"
_CHUNK = 1 << 20
_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.CONTTYPE: "a contiguous file",
}


class Refused(Exception):
    """The archive is not unpacked: the message says which entry and why."""


@dataclass
class Plan:
    """What the first pass found: the archive's digest, metadata and the sha256 of each file by name."""

    sha256: str
    top: str
    metadata: dict[str, Any]
    sums: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return [METADATA_FILE, *sorted(name for name in self.sums if name != METADATA_FILE)]


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


def check_metadata(metadata: object) -> dict[str, Any]:
    """The checks of metadata.json that keep its names safe in paths (the app checks the rest)."""
    if not isinstance(metadata, dict):
        raise Refused(f"{METADATA_FILE} must hold a JSON object")
    for key in ("name", "version"):
        if key not in metadata:
            raise Refused(f"{METADATA_FILE} lacks {key}")
        if not is_safe_name(metadata[key]):
            raise Refused(f"{METADATA_FILE}: {key} {metadata[key]!r} is not a safe name ({SAFE_NAME_RULE})")
    files = metadata.get("files")
    if not isinstance(files, dict):
        raise Refused(f"{METADATA_FILE}: files must map file names to their sha256")
    for name in files:
        if not is_safe_name(name):
            raise Refused(f"{METADATA_FILE}: files lists {name!r}, which is not a plain file name ({SAFE_NAME_RULE})")
    return metadata


class BoundedReader:
    """A file-like reader that refuses to return more than `limit` bytes of `stream`."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1 - self.count
        data = self._stream.read(min(size, self._limit + 1 - self.count))
        self.count += len(data)
        if self.count > self._limit:
            raise Refused(f"it decompresses to more than {self._limit} bytes (a compression bomb?)")
        return data


def stream_limit(max_bytes: int, max_members: int) -> int:
    """Decompressed bytes allowed: the files, plus their headers and padding, long-name and pax headers."""
    return max_bytes + (max_members + 2) * 4096 + 64 * 1024


@contextlib.contextmanager
def open_members(handle: IO[bytes], max_bytes: int, max_members: int) -> Iterator[tarfile.TarFile]:
    """The archive from the start of `handle` as a tar stream, its decompressed size bounded."""
    handle.seek(0)
    with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
        bounded = BoundedReader(unzipped, stream_limit(max_bytes, max_members))
        with tarfile.open(fileobj=bounded, mode="r|") as tar:
            yield tar


def entry_name(member: tarfile.TarInfo, top: str | None) -> tuple[str, str | None]:
    """The entry's top directory and its file name in it (None for the top directory itself).

    Raises Refused for a path, a type or a place no artifact entry has.
    """
    name = member.name
    if name.startswith("/"):
        raise Refused(f"{name} has an absolute path")
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        raise Refused(f"{name} leaves the archive's directory ('..')")
    if not (member.isreg() and member.type in (tarfile.REGTYPE, tarfile.AREGTYPE)) and not member.isdir():
        kind = _TYPE_NAMES.get(member.type, f"not a regular file (tar type {member.type!r})")
        target = f" to {member.linkname}" if member.issym() or member.islnk() else ""
        raise Refused(f"{name} is {kind}{target}: an artifact holds regular files only")
    if top is not None and parts[0] != top:
        raise Refused(f"{name} is not under the archive's single top directory {top}/")
    if len(parts) == 1:
        if not member.isdir():
            raise Refused(f"{name} is not under a top directory (an artifact archive holds one directory)")
        return parts[0], None
    if member.isdir() or len(parts) != 2:
        raise Refused(f"{name} is not a file directly in the top directory {parts[0]}/")
    return parts[0], parts[1]


def sha256_of(handle: IO[bytes]) -> str:
    handle.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:  # entry_name lets regular files only through
        raise Refused(f"{member.name} has no content to read")
    return source


def copy_member(source: IO[bytes], target: IO[bytes] | None) -> str:
    """Copy a member's content (when `target` is given) and return its sha256."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
    return digest.hexdigest()


def inspect(handle: IO[bytes], expected_sha256: str, max_bytes: int, max_members: int) -> Plan:
    """First pass: check the digest and every entry, read metadata.json; write nothing."""
    digest = sha256_of(handle)
    if expected_sha256 and digest != expected_sha256.strip().lower():
        raise Refused(f"its sha256 is {digest}, not the expected {expected_sha256.strip().lower()}")
    top: str | None = None
    sums: dict[str, str] = {}
    metadata_bytes = b""
    members = total = 0
    with open_members(handle, max_bytes, max_members) as tar:
        for member in tar:
            members += 1
            if members > max_members:
                raise Refused(f"it holds more than {max_members} entries (at {member.name})")
            top, name = entry_name(member, top)
            if name is None:
                continue
            if name in sums:
                raise Refused(f"{member.name} is in the archive twice")
            total += member.size
            if total > max_bytes:
                raise Refused(f"its files hold more than {max_bytes} bytes (at {member.name}, {member.size} bytes)")
            source = content(tar, member)
            if name == METADATA_FILE:
                metadata_bytes = source.read()
                sums[name] = hashlib.sha256(metadata_bytes).hexdigest()
            else:
                sums[name] = copy_member(source, None)
    if top is None or METADATA_FILE not in sums:
        raise Refused(f"it holds no {METADATA_FILE} in a top directory")
    try:
        metadata = json.loads(metadata_bytes)
    except ValueError as exc:
        raise Refused(f"{top}/{METADATA_FILE} is not readable JSON: {exc}") from exc
    check_metadata(metadata)
    listed = set(metadata["files"])
    unlisted = sorted(set(sums) - listed - {METADATA_FILE})
    if unlisted:
        raise Refused(f"{top}/{unlisted[0]} is not listed in {METADATA_FILE}'s files")
    missing = sorted(listed - set(sums))
    if missing:
        raise Refused(f"{METADATA_FILE} lists {missing[0]} but the archive does not hold {top}/{missing[0]}")
    return Plan(sha256=digest, top=top, metadata=metadata, sums=sums)


def holds(dest: Path, plan: Plan) -> bool:
    """Whether `dest` is a directory holding exactly the plan's files, as regular files with the same bytes."""
    if dest.is_symlink() or not dest.is_dir():
        return False
    try:
        entries = sorted(os.listdir(dest))
        if entries != sorted(plan.sums):
            return False
        for name in entries:
            path = dest / name
            if not stat.S_ISREG(path.lstat().st_mode):
                return False
            with path.open("rb") as handle:
                if sha256_of(handle) != plan.sums[name]:
                    return False
    except FileNotFoundError:  # replaced meanwhile by another run (see locked)
        return False
    return True


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on a file beside `dest`: runs unpacking into the same `dest` take turns."""
    fd = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def extract(handle: IO[bytes], plan: Plan, directory: Path, max_bytes: int, max_members: int) -> None:
    """Second pass: write the plan's files into `directory`, refusing content that differs from the first pass."""
    with open_members(handle, max_bytes, max_members) as tar:
        for member in tar:
            _, name = entry_name(member, plan.top)
            if name is None:
                continue
            if name not in plan.sums:
                raise Refused(f"{member.name} appeared after the archive was checked")
            source = content(tar, member)
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as target:
                written = copy_member(source, target)
            if written != plan.sums.get(name):
                raise Refused(f"{member.name} changed while it was read")
            os.chmod(directory / name, 0o644)


def install(temporary: Path, dest: Path) -> None:
    """Put the unpacked directory in place of `dest` (a rename; a `dest` with other content is replaced)."""
    if not (dest.exists() or dest.is_symlink()):
        os.rename(temporary, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
    os.rename(dest, old / "content")
    try:
        os.rename(temporary, dest)
    except OSError:
        os.rename(old / "content", dest)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def readable() -> Iterator[None]:
    """Say that an archive tarfile or gzip cannot read is refused."""
    try:
        yield
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Refused(f"it is not a readable gzip-compressed tar archive ({exc})") from exc


def unpack(
    src: Path,
    dest: Path,
    sha256: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    check_mode: bool = False,
) -> tuple[bool, Plan]:
    """Unpack `src` into `dest` unless `dest` already holds it; returns (changed, plan). Raises Refused."""
    with src.open("rb") as handle:
        with readable():
            plan = inspect(handle, sha256, max_bytes, max_members)
        if holds(dest, plan):
            return False, plan
        if check_mode:
            return True, plan
        dest.parent.mkdir(parents=True, exist_ok=True)
        with locked(dest):
            if holds(dest, plan):  # another run unpacked it while this one waited
                return False, plan
            temporary = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new.", dir=dest.parent))
            try:
                with readable():
                    extract(handle, plan, temporary, max_bytes, max_members)
                os.chmod(temporary, 0o755)
                install(temporary, dest)
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
    return True, plan


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "sha256": {"type": "str", "default": ""},
            "max_bytes": {"type": "int", "default": DEFAULT_MAX_BYTES},
            "max_members": {"type": "int", "default": DEFAULT_MAX_MEMBERS},
        },
        supports_check_mode=True,
    )
    p = module.params
    src, dest = Path(p["src"]), Path(p["dest"])
    if not src.is_file():
        module.fail_json(msg=f"The archive {src} does not exist.", dest=str(dest))
    try:
        changed, plan = unpack(src, dest, p["sha256"], p["max_bytes"], p["max_members"], module.check_mode)
    except Refused as refused:
        module.fail_json(msg=f"The archive {src} is refused: {refused}. Nothing was written to {dest}.", dest=str(dest))
    except OSError as error:
        module.fail_json(msg=f"The archive {src} could not be unpacked into {dest}: {error}", dest=str(dest))
    module.exit_json(changed=changed, dest=str(dest), sha256=plan.sha256, metadata=plan.metadata, files=plan.files)


if __name__ == "__main__":
    main()
