"""The safe unpack of model artifact archives (plugins/modules/model_archive.py): a good archive is unpacked
once, and every hostile or broken one is refused with the entry and the reason, nothing written to dest."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import importlib.util
import io
import json
import shutil
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("model_archive", ROOT / "plugins/modules/model_archive.py")
assert _SPEC is not None
assert _SPEC.loader is not None
model_archive = importlib.util.module_from_spec(_SPEC)
sys.modules["model_archive"] = model_archive
_SPEC.loader.exec_module(model_archive)
Refused, unpack = model_archive.Refused, model_archive.unpack

MODEL = b"model bytes " * 100


def metadata(**changes: object) -> dict:
    meta: dict = {
        "format_version": 1,
        "name": "demo-classifier",
        "version": "1.0.0",
        "files": {"model.ubj": hashlib.sha256(MODEL).hexdigest()},
    }
    meta.update(changes)
    return meta


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def directory(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def good_entries(top: str = "demo-v1", meta: dict | None = None) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [
        directory(f"{top}/"),
        regular(f"{top}/metadata.json", json.dumps(meta or metadata()).encode()),
        regular(f"{top}/model.ubj", MODEL),
    ]


def archive(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "demo-v1-0123456789ab"


def lock_of(dest: Path) -> str:
    """The lock file that unpack leaves beside dest (runs into the same dest take turns on it)."""
    return f".{dest.name}.lock"


def test_a_good_archive_is_unpacked_once(tmp_path: Path, dest: Path) -> None:
    src = archive(tmp_path / "demo.tar.gz", good_entries())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    changed, plan = unpack(src, dest, sha256=digest)
    assert changed
    assert plan.sha256 == digest
    assert plan.metadata == metadata()
    assert plan.files == ["metadata.json", "model.ubj"]
    assert sorted(p.name for p in dest.iterdir()) == ["metadata.json", "model.ubj"]
    assert (dest / "model.ubj").read_bytes() == MODEL
    assert (dest / "model.ubj").stat().st_mode & 0o777 == 0o644
    assert dest.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in dest.parent.iterdir()) == [lock_of(dest), dest.name]  # no temporary left

    mtime = (dest / "model.ubj").stat().st_mtime_ns
    assert unpack(src, dest, sha256=digest)[0] is False
    assert (dest / "model.ubj").stat().st_mtime_ns == mtime


def test_an_archive_of_dot_unpacks_like_tar_strip_components(tmp_path: Path, dest: Path) -> None:
    src = archive(tmp_path / "demo.tgz", good_entries(top="."))
    assert unpack(src, dest)[0]
    assert (dest / "metadata.json").is_file()


def test_a_dest_with_other_content_is_replaced(tmp_path: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    (dest / "metadata.json").write_text("{}")
    (dest / "model.ubj").symlink_to("/etc/passwd")
    (dest / "stale").write_text("left by an older unpack")
    src = archive(tmp_path / "demo.tar.gz", good_entries())
    assert unpack(src, dest)[0]
    assert sorted(p.name for p in dest.iterdir()) == ["metadata.json", "model.ubj"]
    assert not (dest / "model.ubj").is_symlink()
    assert sorted(p.name for p in dest.parent.iterdir()) == [lock_of(dest), dest.name]


def _unpack_after(start: threading.Barrier, src: Path, dest: Path) -> bool:
    start.wait()
    return unpack(src, dest)[0]


@pytest.mark.parametrize("before", ["no-dest", "other-content"])
def test_runs_unpacking_into_the_same_dest_at_once_take_turns(tmp_path: Path, dest: Path, before: str) -> None:
    # Two CI lanes sharing a cache: every run succeeds, exactly one writes, dest ends up right.
    big = bytes(range(256)) * 8192  # 2 MiB: unpacking takes long enough for the runs to overlap
    meta = metadata(files={"model.ubj": hashlib.sha256(big).hexdigest()})
    entries = [directory("demo-v1/"), regular("demo-v1/metadata.json", json.dumps(meta).encode())]
    src = archive(tmp_path / "demo.tar.gz", [*entries, regular("demo-v1/model.ubj", big)])
    runs = 4
    for _ in range(5):
        shutil.rmtree(dest.parent, ignore_errors=True)
        if before == "other-content":
            dest.mkdir(parents=True)
            (dest / "stale").write_text("left by an older unpack")
        start = threading.Barrier(runs)
        with concurrent.futures.ThreadPoolExecutor(runs) as pool:
            changed = [
                future.result() for future in [pool.submit(_unpack_after, start, src, dest) for _ in range(runs)]
            ]
        assert sorted(changed) == [False] * (runs - 1) + [True]
        assert sorted(p.name for p in dest.iterdir()) == ["metadata.json", "model.ubj"]
        assert (dest / "model.ubj").read_bytes() == big
        assert sorted(p.name for p in dest.parent.iterdir()) == [lock_of(dest), dest.name]


def test_check_mode_writes_nothing(tmp_path: Path, dest: Path) -> None:
    src = archive(tmp_path / "demo.tar.gz", good_entries())
    changed, plan = unpack(src, dest, check_mode=True)
    assert changed
    assert plan.metadata["version"] == "1.0.0"
    assert not dest.parent.exists()


def _bomb() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    # 4 MiB of zeros compress to a few KiB; the bound in the test is 1 MiB.
    zeros = b"\0" * (4 << 20)
    return [
        *good_entries(meta=metadata(files={"model.ubj": hashlib.sha256(zeros).hexdigest()}))[:2],
        regular("demo-v1/model.ubj", zeros),
    ]


HOSTILE: dict[str, tuple[Callable[[], list], str]] = {
    "symlink": (
        lambda: [*good_entries()[:2], special("demo-v1/model.ubj", tarfile.SYMTYPE, "/etc/passwd")],
        "demo-v1/model.ubj is a symbolic link to /etc/passwd: an artifact holds regular files only",
    ),
    "hardlink": (
        lambda: [*good_entries(), special("demo-v1/notes", tarfile.LNKTYPE, "etc/shadow")],
        "demo-v1/notes is a hard link to etc/shadow",
    ),
    "character device": (
        lambda: [*good_entries(), special("demo-v1/null", tarfile.CHRTYPE)],
        "demo-v1/null is a character device",
    ),
    "fifo": (lambda: [*good_entries(), special("demo-v1/pipe", tarfile.FIFOTYPE)], "demo-v1/pipe is a FIFO"),
    "dot-dot": (
        lambda: [*good_entries(), regular("demo-v1/../../evil.sh", b"#!/bin/sh\n")],
        "demo-v1/../../evil.sh leaves the archive's directory ('..')",
    ),
    "absolute path": (
        lambda: [*good_entries(), regular("/etc/cron.d/evil", b"* * * * * root true\n")],
        "/etc/cron.d/evil has an absolute path",
    ),
    "second top directory": (
        lambda: [*good_entries(), regular("other/model.ubj", MODEL)],
        "other/model.ubj is not under the archive's single top directory demo-v1/",
    ),
    "no top directory": (
        lambda: [regular("metadata.json", json.dumps(metadata()).encode()), regular("model.ubj", MODEL)],
        "metadata.json is not under a top directory",
    ),
    "subdirectory": (
        lambda: [*good_entries(), regular("demo-v1/sub/model.ubj", MODEL)],
        "demo-v1/sub/model.ubj is not a file directly in the top directory demo-v1/",
    ),
    "unlisted file": (
        lambda: [*good_entries(), regular("demo-v1/run.sh", b"#!/bin/sh\n")],
        "demo-v1/run.sh is not listed in metadata.json's files",
    ),
    "listed file missing": (
        lambda: good_entries()[:2],
        "metadata.json lists model.ubj but the archive does not hold",
    ),
    "no metadata": (lambda: [good_entries()[0], good_entries()[2]], "holds no metadata.json"),
    "an entry twice": (
        lambda: [*good_entries(), regular("demo-v1/model.ubj", b"other")],
        "demo-v1/model.ubj is in the archive twice",
    ),
    "too many members": (
        lambda: [*good_entries(), *(regular(f"demo-v1/f{i}", b"x") for i in range(70))],
        "it holds more than 64 entries (at demo-v1/f61)",
    ),
    "bomb": (_bomb, "its files hold more than 1048576 bytes (at demo-v1/model.ubj, 4194304 bytes)"),
    "unsafe name": (
        lambda: good_entries(meta=metadata(name="../x")),
        "metadata.json: name '../x' is not a safe name",
    ),
    "unsafe version": (
        lambda: good_entries(meta=metadata(version="1.0/../../etc")),
        "metadata.json: version '1.0/../../etc' is not a safe name",
    ),
    "unsafe file name": (
        lambda: good_entries(meta=metadata(files={"../model.ubj": "0" * 64, "model.ubj": "0" * 64})),
        "metadata.json: files lists '../model.ubj', which is not a plain file name",
    ),
}


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Names and contents of what a directory holds ({} when it does not exist)."""
    if not directory.exists():
        return {}
    return {p.name: None if p.is_dir() else p.read_bytes() for p in directory.iterdir()}


@pytest.mark.parametrize("unpacked_before", [False, True], ids=["no-dest", "dest-unpacked-before"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_and_nothing_is_written(
    tmp_path: Path, dest: Path, case: str, unpacked_before: bool
) -> None:
    if unpacked_before:
        unpack(archive(tmp_path / "good.tar.gz", good_entries()), dest)
    before = snapshot(dest)
    entries, message = HOSTILE[case]
    src = archive(tmp_path / "hostile.tar.gz", entries())
    with pytest.raises(Refused) as refused:
        unpack(src, dest, max_bytes=1 << 20)
    assert message in str(refused.value)
    assert snapshot(dest) == before
    # No temporary left (the lock file stays from the earlier unpack).
    assert snapshot(dest.parent).keys() == ({lock_of(dest), dest.name} if unpacked_before else set())


def test_a_sha256_mismatch_is_refused(tmp_path: Path, dest: Path) -> None:
    src = archive(tmp_path / "demo.tar.gz", good_entries())
    actual = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(Refused, match=f"its sha256 is {actual}, not the expected {'0' * 64}"):
        unpack(src, dest, sha256="0" * 64)
    assert not dest.parent.exists()


def test_the_decompressed_stream_is_cut_off_at_the_bound(tmp_path: Path, dest: Path) -> None:
    # A pax header is no entry and declares no file size: 4 MiB of it, compressed to a few KiB, is only
    # stopped by the bound on the decompressed stream.
    info, data = regular("demo-v1/model.ubj", MODEL)
    info.pax_headers = {"comment": "x" * (4 << 20)}
    src = tmp_path / "bomb.tar.gz"
    with tarfile.open(src, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for entry, content in [*good_entries()[:2], (info, data)]:
            tar.addfile(entry, io.BytesIO(content) if content is not None else None)
    assert src.stat().st_size < 64 * 1024
    with pytest.raises(Refused, match=r"it decompresses to more than \d+ bytes \(a compression bomb\?\)"):
        unpack(src, dest, max_bytes=1 << 20)
    assert not dest.parent.exists()

    bomb = tmp_path / "zeros.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (8 << 20)))
    with gzip.open(bomb) as unzipped:
        reader = model_archive.BoundedReader(unzipped, 1 << 20)
        with pytest.raises(Refused, match="a compression bomb"):
            reader.read()
        assert reader.count <= (1 << 20) + 1


@pytest.mark.parametrize("content", [b"not an archive at all", gzip.compress(b"not a tar")])
def test_an_unreadable_archive_is_refused(tmp_path: Path, dest: Path, content: bytes) -> None:
    src = tmp_path / "garbage.tar.gz"
    src.write_bytes(content)
    with pytest.raises(Refused, match="not a readable gzip-compressed tar archive"):
        unpack(src, dest)
    assert not dest.parent.exists()


def test_a_truncated_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    src = archive(tmp_path / "demo.tar.gz", good_entries())
    src.write_bytes(src.read_bytes()[:-40])
    with pytest.raises(Refused, match="not a readable gzip-compressed tar archive"):
        unpack(src, dest)
    assert not dest.parent.exists()


@pytest.mark.parametrize("name", ["demo-classifier", "1.0.0", "2.1.0", "1.0.0-rc.1+build.5", "model.ubj", "v2_final"])
def test_safe_names(name: str) -> None:
    assert model_archive.is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "../x", "a/b", "a\\b", "x\n", "a b", "x" * 65, 1])
def test_unsafe_names(name: object) -> None:
    assert not model_archive.is_safe_name(name)


def test_the_app_and_the_module_share_one_name_rule() -> None:
    app = (ROOT / "app/src/model_service/artifact.py").read_text()
    role = (ROOT / "roles/model_service/vars/main.yml").read_text()
    pattern = model_archive.SAFE_NAME.pattern
    assert f'SAFE_NAME = re.compile(r"{pattern}")' in app
    assert f"_model_service_safe_name: '^{pattern}\\Z'" in role
