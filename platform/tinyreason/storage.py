"""Where a run's outputs live: a local directory, or any URI Ray Train takes as storage.

`storage.path` is a local dir on one machine and `s3://bucket/prefix` (gs://, abfs://,
hdfs://, file://) on a cluster. Every operation goes through pyarrow.fs, the layer
Ray Train resolves `RunConfig.storage_path` with, so a URI that works here works
there, query options included: `s3://bucket/prefix?endpoint_override=host:9000&scheme=http`.

Code works on real files under `local_root` (the storage itself for a local path, a
cache mirror for a URI) and moves whole directories with `upload_dir`/`local_copy`.
Keys are relative posix paths such as "stages/01-sft-abc123/manifest.json".

Credentials never appear in a message: `str(storage)`, errors and logs show
`redact(uri)`. The two strings that must keep them to work, `.uri` and
`ray_storage_path()`, are returned as given and never logged here.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
from filelock import FileLock

from tinyreason.uris import copy_tree, error_reason, listing, open_filesystem, redact, replace_atomically

CACHE_ENV = "TINYREASON_CACHE"  # base dir of the mirrors; each storage gets <base>/<hash of its URI>
DEFAULT_CACHE = "~/.cache/tinyreason/storage"
# Object stores have no directories: creating one costs requests and leaves empty marker objects.
_FLAT = ("s3", "gcs")


def _key(rel: str) -> str:
    """`rel` as a clean key under the root; absolute paths and '..' are refused so no key escapes it."""
    rel = str(rel)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts or "://" in rel:
        raise ValueError(f"storage key {rel!r} must be a relative path inside the storage, "
                         "like 'stages/01-sft-abc123/manifest.json'")
    return "/".join(parts)


class Storage:
    """A storage root (local dir or URI) with key-based operations and a local working copy."""

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        raw = str(path).strip()
        if not raw:
            raise ValueError("storage.path is empty; give a directory (e.g. runs) or a URI such as s3://bucket/prefix")
        self._cache_arg = cache_dir
        if "://" in raw:
            scheme, rest = raw.split("://", 1)
            raw = f"{scheme.lower()}://{rest}"
            self.filesystem, fs_path = open_filesystem(raw)
            self.is_remote = not isinstance(self.filesystem, pafs.LocalFileSystem)
        else:
            self.filesystem, fs_path, self.is_remote = pafs.LocalFileSystem(), raw, False
        if not self.is_remote:
            root = Path(fs_path).expanduser().resolve()
            self.uri = root.as_uri() if "://" in raw else str(root)
            self._root, self.local_root = root.as_posix(), root
            return
        base, sep, query = raw.partition("?")
        self.uri = f"{base.rstrip('/')}{sep}{query}"
        self._root = fs_path.rstrip("/")
        cache = Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser().resolve()
        # Hash the redacted URI: the mirror is shared across credentials for the same place,
        # and nothing derived from a secret ends up in a path.
        self.local_root = cache / hashlib.sha256(redact(self.uri).encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Storage({redact(self.uri)!r})"

    __str__ = __repr__

    def __reduce__(self):
        # Rebuilt from the URI on unpickling, so each Ray node computes its own mirror dir;
        # the sender's mirror travels along so paths it computed can be mapped back to keys.
        return (_restore, (self.uri, self._cache_arg, str(self.origin_root)))

    @property
    def origin_root(self) -> Path:
        """The mirror of the process that created this Storage (the driver's, on a worker)."""
        return getattr(self, "_origin_root", self.local_root)

    def key_of(self, path: str | os.PathLike) -> str | None:
        """The key of a path under this node's or the origin's mirror; None for any other path."""
        p = Path(path)
        for root in (self.local_root, self.origin_root):
            if p == root or root in p.parents:
                return p.relative_to(root).as_posix()
        return None

    def fs_path(self, rel: str) -> str:
        """The path inside `filesystem` (for pyarrow/Ray Data readers given `filesystem=`)."""
        return self._path(rel)

    # ------------------------------------------------------------------ keys and paths

    def _path(self, rel: str) -> str:
        key = _key(rel)
        return posixpath.join(self._root, key) if key else self._root

    def _show(self, rel: str) -> str:
        return f"{redact(self.uri)}/{_key(rel)}"

    @property
    def _work(self) -> Path:
        # Beside the mirror, not inside it: partial downloads and locks never show up in a listing,
        # and a rename from here into the mirror stays on one filesystem, hence atomic.
        return self.local_root.with_name(self.local_root.name + ".work")

    def ray_storage_path(self, rel: str = "ray") -> str:
        """The string for RunConfig(storage_path=...): `rel` joined before any ?query, not after it."""
        key = _key(rel)
        if not self.is_remote:
            return self._path(rel)
        base, sep, query = self.uri.partition("?")
        return f"{base}/{key}{sep}{query}" if key else self.uri

    # ------------------------------------------------------------------ single objects

    def exists(self, rel: str) -> bool:
        return self.filesystem.get_file_info(self._path(rel)).type != pafs.FileType.NotFound

    def read_text(self, rel: str) -> str:
        with self.filesystem.open_input_stream(self._path(rel)) as f:
            return f.read().decode("utf-8")

    def write_text(self, rel: str, text: str) -> None:
        """Write a whole text object; readers see the old or the new content, never half of it."""
        path = self._path(rel)
        if not self.is_remote:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        # An object store publishes an object only when its upload completes: atomic already.
        self._make_parent(path)
        with self.filesystem.open_output_stream(path) as f:
            f.write(text.encode("utf-8"))

    def _make_parent(self, path: str) -> None:
        if self.filesystem.type_name not in _FLAT:
            self.filesystem.create_dir(posixpath.dirname(path), recursive=True)

    def delete(self, rel: str) -> None:
        """Remove a file or a whole directory (and its mirror copy); absent keys are fine."""
        if not _key(rel):
            raise ValueError(f"refusing to delete the whole storage {redact(self.uri)!r}; name a key inside it")
        path = self._path(rel)
        kind = self.filesystem.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            self.filesystem.delete_dir(path)
        elif kind == pafs.FileType.File:
            self.filesystem.delete_file(path)
        if self.is_remote:
            mirror = self.local_root / _key(rel)
            if mirror.is_dir():
                shutil.rmtree(mirror, ignore_errors=True)
            else:
                mirror.unlink(missing_ok=True)

    def listdir(self, rel: str = "") -> list[str]:
        """Sorted names directly under `rel`; [] when it does not exist (as Ray Train's listing)."""
        path = self._path(rel)
        if self.filesystem.get_file_info(path).type == pafs.FileType.File:
            raise NotADirectoryError(f"{self._show(rel)} is a file, not a directory")
        found = self.filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(i.path.rstrip("/")) for i in found)

    # ------------------------------------------------------------------ directories

    def upload_dir(self, local_dir: str | os.PathLike, rel: str) -> None:
        """Copy a local tree to `rel`, overwriting files of the same name; other files there stay.

        Delete `rel` first for an exact replica. Write the completion marker (manifest) after
        this returns: an object store shows files one by one as they land.
        """
        src = Path(local_dir).expanduser().resolve()
        if not src.is_dir():
            raise NotADirectoryError(f"upload_dir: {src} is not a directory")
        dest = self._path(rel)
        if not self.is_remote and Path(dest).resolve() == src:
            return  # the work was done in place: local storage is its own local_root
        if self.filesystem.type_name not in _FLAT:
            self.filesystem.create_dir(dest, recursive=True)
        copy_tree(str(src), dest, pafs.LocalFileSystem(), self.filesystem)

    def download_dir(self, rel: str, local_dir: str | os.PathLike) -> Path:
        """Copy the tree at `rel` into `local_dir` (overwriting files of the same name); returns it."""
        src, dest = self._path(rel), Path(local_dir).expanduser().resolve()
        if self.filesystem.get_file_info(src).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"{self._show(rel)}: no such directory in storage")
        if not self.is_remote and Path(src).resolve() == dest:
            return dest
        dest.mkdir(parents=True, exist_ok=True)
        copy_tree(src, str(dest), self.filesystem, pafs.LocalFileSystem())
        return dest

    def local_copy(self, rel: str) -> Path:
        """A local path holding the file or tree at `rel`: the path itself for local storage;
        for a URI, the mirror under local_root, downloaded when it differs from storage.

        "Differs" compares file names and sizes (one listing): enough for content-addressed
        outputs, which never change under the same key. Safe across processes on one node.
        """
        if not self.is_remote:
            path = Path(self._path(rel))
            if not path.exists():
                raise FileNotFoundError(f"{self._show(rel)}: not found in storage")
            return path
        mirror = self.local_root / _key(rel)
        remote = listing(self.filesystem, self._path(rel))
        if remote is None:
            raise FileNotFoundError(f"{self._show(rel)}: not found in storage")
        local_fs = pafs.LocalFileSystem()
        if listing(local_fs, str(mirror)) == remote:
            return mirror
        self._work.mkdir(parents=True, exist_ok=True)
        lock_name = hashlib.sha256(_key(rel).encode()).hexdigest()[:16]
        with FileLock(str(self._work / f"{lock_name}.lock")):
            if listing(local_fs, str(mirror)) == remote:
                return mirror  # another process on this node fetched it while we waited
            tmp = self._work / f"{lock_name}.partial-{uuid.uuid4().hex[:8]}"
            try:
                if "" not in remote:
                    tmp.mkdir()  # an empty remote dir copies no file, yet its mirror must exist
                copy_tree(self._path(rel), str(tmp), self.filesystem, local_fs)
                replace_atomically(tmp, mirror)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return mirror

    # ------------------------------------------------------------------ paths that cross processes

    def localize(self, path: str) -> str:
        """`path` made readable in this process: a file or dir in remote storage is fetched into
        this node's mirror. Local storage, hub ids and other paths come back unchanged.

        Call it where a process that did not write a path is about to read it (a training
        worker loading its parent model, an evaluation task loading a stage's export).
        """
        if not self.is_remote:
            return path
        key = self.key_of(path)
        return path if key is None else str(self.local_copy(key))

    def located(self, path: str) -> str:
        """`path` as a `Located` for remote storage; the plain path otherwise."""
        return Located(self, str(path)) if self.is_remote else str(path)

    def publish(self, path: str | os.PathLike, marker: str | None = None) -> None:
        """Copy a local text file or a dir under the mirror to its key in remote storage (a
        no-op for local storage). A dir's `marker` file (its manifest) is uploaded last, so
        storage never shows a marker before the files it vouches for."""
        if not self.is_remote:
            return
        key = self.key_of(path)
        if key is None:
            raise ValueError(f"{path} is not under the storage mirror {self.local_root}; nothing to publish")
        p = Path(path)
        if not p.is_dir():
            self.write_text(key, p.read_text(encoding="utf-8"))
            return
        held = (p / marker).read_text(encoding="utf-8") if marker and (p / marker).exists() else None
        if held is not None:
            (p / marker).unlink()
        try:
            self.upload_dir(p, key)
        finally:
            if held is not None:
                (p / marker).write_text(held, encoding="utf-8")
        if held is not None:
            self.write_text(f"{key}/{marker}", held)

    def on_node(self, fn, read: tuple[int, ...] = (0,), write: tuple[int, ...] = ()):
        """`fn` wrapped for a Ray task on any node: the path arguments at positions `read` are
        fetched from remote storage first, those at `write` (output dirs) published after.
        Returns `fn` itself for local storage."""
        if not self.is_remote:
            return fn

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            args = list(args)
            for i in read:
                if args[i] is not None:
                    args[i] = self.localize(str(args[i]))
            result = fn(*args, **kwargs)
            for i in write:
                if Path(args[i]).exists():
                    self.publish(args[i])
            return result

        return wrapped

    # ------------------------------------------------------------------ checks

    def check_writable(self) -> None:
        """Write and delete a probe object, or raise a ValueError naming the URI and the fix.

        Run it before any work: without it, a missing bucket or credential shows up only at
        the first checkpoint, minutes into training, as a traceback from inside Ray Train.
        """
        probe = f".tinyreason-write-probe-{uuid.uuid4().hex[:8]}"
        try:
            self.write_text(probe, "ok")
            self.delete(probe)
        except (OSError, pa.ArrowException) as e:
            if self.is_remote:
                fix = ("check that the bucket exists, that credentials reach every node (AWS_ACCESS_KEY_ID/"
                       "AWS_SECRET_ACCESS_KEY or an instance role for s3://, GOOGLE_APPLICATION_CREDENTIALS "
                       "for gs://), that they may write under this prefix, and for an S3-compatible server "
                       "add ?endpoint_override=host:port&scheme=http")
            else:
                fix = "choose a directory you can write, e.g. --set storage.path=$HOME/tinyreason-runs"
            raise ValueError(f"storage.path = {redact(self.uri)!r} is not writable "
                             f"({error_reason(e, self.uri)}); {fix}") from None


def _restore(uri: str, cache_arg, origin_root: str) -> Storage:
    store = Storage(uri, cache_arg)
    store._origin_root = Path(origin_root)
    return store


class Located(str):
    """A mirror path that knows its storage: `resolve()` fetches it on whichever node reads it.

    For arguments that travel inside Ray Data closures (the tokenizer dir of a map_batches
    call), where threading a `store` through every function would touch them all. A str
    subclass, so it reads as the path in logs and manifests."""

    def __new__(cls, store: Storage, path: str):
        obj = super().__new__(cls, path)
        obj.store = store
        return obj

    def __reduce__(self):
        return (Located, (self.store, str(self)))


def resolve(path: str) -> str:
    """The local path for a `Located` (fetched into this node's mirror) or a plain path."""
    return path.store.localize(str(path)) if isinstance(path, Located) else path
