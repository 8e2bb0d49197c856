"""Storage URIs: which schemes Ray Train resolves, opening their filesystems through
pyarrow, copying trees between filesystems, and keeping credentials out of every message.

`redact(uri)` is what any log or error shows of a URI; the secret-bearing URI itself is
only handed to pyarrow and Ray Train.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs

# The schemes pyarrow.fs.FileSystem.from_uri resolves, hence the only ones Ray Train takes as a
# storage_path string; fsspec-only schemes (az://, memory://) would work here and fail in Ray Train.
SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs", "file", "local", "mock")
_SECRET_PARAM = re.compile(r"key|secret|token|passw|credential|sig", re.IGNORECASE)
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^@?#]*:[^@?#]*)@")
_CHUNK = 64 * 1024 * 1024  # Ray Train's copy chunk: large checkpoints move in few requests
URI_FORM = ("s3://bucket/prefix (options as ?region=eu-west-1 or ?endpoint_override=host:port&scheme=http), "
            "gs://bucket/prefix, abfs://container@account.dfs.core.windows.net/prefix, file:///abs/dir")


def redact(uri: str) -> str:
    """`uri` fit for a message: user:password@ and secret-looking query values become ***."""
    if "://" not in uri:
        return uri
    out = _USERINFO.sub(r"\1***@", uri)
    base, sep, query = out.partition("?")
    if not sep:
        return out
    params = [_redact_param(p) for p in query.split("&")]
    return f"{base}?{'&'.join(params)}"


def _redact_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    return f"{name}=***" if eq and _SECRET_PARAM.search(name) else param


def secrets_in(uri: str) -> list[str]:
    """The secret values inside `uri`, to scrub from library messages that echo them."""
    found: list[str] = []
    m = _USERINFO.match(uri)
    if m:
        found += m.group(2).split(":", 1)
    for param in uri.partition("?")[2].split("&"):
        name, eq, value = param.partition("=")
        if eq and _SECRET_PARAM.search(name):
            found.append(value)
    found += [unquote(s) for s in found]  # a library may echo them percent-decoded
    return [s for s in found if len(s) >= 4]  # shorter ones would blank out ordinary words


def error_reason(e: BaseException, uri: str) -> str:
    """First line of a library error, with the URI's secrets removed (pyarrow echoes URIs)."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    text = text.replace(uri, redact(uri))
    for secret in secrets_in(uri):
        text = text.replace(secret, "***")
    return text[:300]


def copy_tree(src: str, dest: str, src_fs: pafs.FileSystem, dest_fs: pafs.FileSystem) -> None:
    # Multi-threaded uploads to S3 can fail or hang (apache/arrow#32372); Ray Train turns
    # threads off for S3 destinations too. Downloads stay threaded.
    threads = not isinstance(dest_fs, pafs.S3FileSystem)
    pafs.copy_files(src, dest, source_filesystem=src_fs, destination_filesystem=dest_fs,
                    use_threads=threads, chunk_size=_CHUNK)


def listing(fs: pafs.FileSystem, path: str) -> dict[str, int] | None:
    """{relative file path: size} under `path` ({"": size} for a file); None when absent."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    if info.type == pafs.FileType.File:
        return {"": info.size}
    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return {posixpath.relpath(i.path, path): i.size for i in found if i.type == pafs.FileType.File}


def replace_atomically(tmp: Path, target: Path) -> None:
    """Put `tmp` at `target` with renames only, so readers never see a half-written copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = tmp.with_name(tmp.name + ".old")
    had = target.exists() or target.is_symlink()
    if had:
        os.replace(target, old)
    os.replace(tmp, target)
    if had and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif had:
        old.unlink()


def open_filesystem(raw: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem and in-filesystem root for a URI, or a ValueError with the fix."""
    scheme = raw.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"storage.path = {redact(raw)!r} has an unknown scheme {scheme + '://'!r}; give a local "
                         f"directory or a URI Ray Train can resolve ({', '.join(s + '://' for s in SCHEMES)}), "
                         f"e.g. {URI_FORM}")
    try:
        return pafs.FileSystem.from_uri(raw)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ValueError(f"storage.path = {redact(raw)!r}: cannot open its filesystem ({error_reason(e, raw)}); "
                         f"check the URI's form ({URI_FORM}), that pyarrow supports it here (hdfs:// needs "
                         "a JVM and libhdfs), and for s3:// without ?region= that the bucket's region can be "
                         "looked up") from None


