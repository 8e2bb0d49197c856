"""The storage layer behaves the same on a local dir, a file:// URI and a real S3 API
(moto's server on 127.0.0.1), and hands Ray Train a storage_path it accepts."""

from __future__ import annotations

import json
import os
import pickle
import sys
import uuid
from pathlib import Path

import pytest


from s3_server import make_bucket, moto_s3, s3_uri  # noqa: E402
from tinyreason.storage import CACHE_ENV, Storage, redact  # noqa: E402

KINDS = ["local", "file", "s3"]


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra: pip install -e '.[test]'")
    with moto_s3() as endpoint:
        yield endpoint


def _bucket(endpoint: str) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"  # moto keeps buckets per process: a fresh one per test
    make_bucket(endpoint, name)
    return name


@pytest.fixture(params=KINDS)
def store(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "store"))
    if request.param == "file":
        return Storage((tmp_path / "store").as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    return Storage(s3_uri(endpoint, _bucket(endpoint)), cache_dir=tmp_path / "cache")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {"config.json": b'{"a": 1}', "model.safetensors": bytes(range(256)) * 40,
             "sub/deeper/notes.md": "héllo <think>\n".encode(), "sub/x.txt": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


# --------------------------------------------------------------------------- construction


def test_local_path_is_its_own_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Storage("runs/")
    assert s.uri == str(tmp_path.resolve() / "runs") and s.local_root == tmp_path.resolve() / "runs"
    assert not s.is_remote
    assert s.ray_storage_path("ray") == str(tmp_path.resolve() / "runs" / "ray")


def test_file_uri_is_local(tmp_path):
    s = Storage(f"FILE://{tmp_path}/a dir/../store/".replace(" ", "%20"))
    assert not s.is_remote and s.local_root == tmp_path.resolve() / "store"
    assert s.uri == (tmp_path.resolve() / "store").as_uri()


def test_s3_uri_is_normalised_and_mirrored_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    # endpoint_override: pyarrow contacts nothing at construction (no region lookup)
    s = Storage("s3://bkt/some/prefix/?endpoint_override=127.0.0.1:9&scheme=http")
    assert s.is_remote and s.uri == "s3://bkt/some/prefix?endpoint_override=127.0.0.1:9&scheme=http"
    assert s.local_root.parent == tmp_path / "c" and len(s.local_root.name) == 12
    # the same place reached with other credentials shares the mirror; another prefix does not
    creds = [Storage(f"s3://{k}@bkt/some/prefix?endpoint_override=127.0.0.1:9&scheme=http").local_root
             for k in ("AK1:secret-one", "AK2:secret-two")]
    assert creds[0] == creds[1]
    assert Storage("s3://bkt/other?endpoint_override=127.0.0.1:9&scheme=http").local_root != s.local_root
    assert Storage(s.uri, cache_dir=tmp_path / "x").local_root.parent == tmp_path / "x"


def test_ray_storage_path_joins_before_the_query():
    s = Storage("s3://bkt/prefix?endpoint_override=127.0.0.1:9&scheme=http", cache_dir="/tmp/unused")
    assert s.ray_storage_path("ray") == "s3://bkt/prefix/ray?endpoint_override=127.0.0.1:9&scheme=http"
    assert s.ray_storage_path("") == s.uri
    assert Storage("mock://bkt/p/").ray_storage_path("ray") == "mock://bkt/p/ray"


@pytest.mark.parametrize("value, fragments", [
    ("foo://user:hunter2secret@host/x", ["storage.path", "unknown scheme 'foo://'", "s3://bucket/prefix"]),
    ("memory://x", ["unknown scheme", "Ray Train"]),
    ("file://relative/dir", ["storage.path", "cannot open its filesystem", "Unsupported hostname", "file:///abs/dir"]),
    ("s3://AKIAFAKE:hunter2secret@bkt/p?endpoint_override=127.0.0.1:9&bogus=1",
     ["cannot open its filesystem", "bogus", "endpoint_override=host:port&scheme=http"]),
    ("  ", ["storage.path is empty"]),
])
def test_bad_uri_is_named_with_its_fix(value, fragments):
    with pytest.raises(ValueError) as err:
        Storage(value)
    msg = str(err.value)
    for fragment in fragments:
        assert fragment in msg, msg
    assert "hunter2secret" not in msg and "AKIAFAKE" not in msg and "\n" not in msg


@pytest.mark.parametrize("uri, shown", [
    ("s3://AKIA123:abc/def+ghi@bkt/p?scheme=http", "s3://***@bkt/p?scheme=http"),
    ("s3://bkt/p?endpoint_override=h:9&access_key=AK&secret_key=SK&session_token=T&scheme=http",
     "s3://bkt/p?endpoint_override=h:9&access_key=***&secret_key=***&session_token=***&scheme=http"),
    ("https://h/x?X-Amz-Credential=c&X-Amz-Signature=s&other=1",
     "https://h/x?X-Amz-Credential=***&X-Amz-Signature=***&other=1"),
    ("abfs://container@acct.dfs.core.windows.net/p", "abfs://container@acct.dfs.core.windows.net/p"),
    ("/local/dir", "/local/dir"),
])
def test_redact(uri, shown):
    assert redact(uri) == shown


def test_repr_and_errors_hide_credentials(tmp_path):
    s = Storage("s3://AKIAFAKE:hunter2secret@bkt/p?endpoint_override=127.0.0.1:9&scheme=http", cache_dir=tmp_path)
    assert "hunter2secret" not in repr(s) and "hunter2secret" not in str(s)
    with pytest.raises(ValueError) as err:
        s.delete("")
    assert "hunter2secret" not in str(err.value)


# --------------------------------------------------------------------------- operations, on every kind


def test_text_round_trip(store):
    assert not store.exists("stages/01-sft/manifest.json")
    store.write_text("stages/01-sft/manifest.json", json.dumps({"step": 1, "name": "héllo"}))
    assert store.exists("stages/01-sft/manifest.json") and store.exists("stages/01-sft")
    assert json.loads(store.read_text("stages/01-sft/manifest.json")) == {"step": 1, "name": "héllo"}
    store.write_text("stages/01-sft/manifest.json", "v2")
    assert store.read_text("./stages//01-sft/manifest.json") == "v2"
    assert store.listdir("stages/01-sft") == ["manifest.json"]  # no temp file left beside it


def test_missing_keys(store, tmp_path):
    assert not store.exists("nope") and store.listdir("nope") == []
    with pytest.raises(FileNotFoundError):
        store.read_text("nope.json")
    with pytest.raises(FileNotFoundError, match="nope"):
        store.local_copy("nope")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        store.download_dir("nope", tmp_path / "out")


def test_directory_round_trip(store, tmp_path):
    src = tmp_path / "src"
    files = _make_tree(src)
    store.upload_dir(src, "stages/01-sft/model")
    assert store.listdir("stages/01-sft/model") == ["config.json", "model.safetensors", "sub"]
    assert store.listdir("stages/01-sft/model/sub") == ["deeper", "x.txt"]
    out = store.download_dir("stages/01-sft/model", tmp_path / "out")
    assert out == (tmp_path / "out").resolve() and _tree(out) == files
    # a second upload overwrites files of the same name and keeps the others
    (src / "config.json").write_bytes(b'{"a": 2}')
    (src / "sub" / "x.txt").unlink()
    store.upload_dir(src, "stages/01-sft/model")
    assert store.read_text("stages/01-sft/model/config.json") == '{"a": 2}'
    assert store.exists("stages/01-sft/model/sub/x.txt")


def test_listdir_and_delete(store):
    for rel in ("a/1.txt", "a/2.txt", "a/b/3.txt", "top.txt"):
        store.write_text(rel, rel)
    assert store.listdir() == ["a", "top.txt"] and store.listdir("a") == ["1.txt", "2.txt", "b"]
    with pytest.raises(NotADirectoryError):
        store.listdir("top.txt")
    store.delete("a/1.txt")
    assert store.listdir("a") == ["2.txt", "b"]
    store.delete("a")
    assert not store.exists("a") and not store.exists("a/b/3.txt") and store.listdir() == ["top.txt"]
    store.delete("a")  # absent: nothing to do
    with pytest.raises(ValueError, match="refusing to delete the whole storage"):
        store.delete(".")


def test_keys_cannot_escape_the_root(store):
    for bad in ("../x", "a/../../x", "/etc/passwd", "s3://other/x"):
        with pytest.raises(ValueError, match="relative path inside the storage"):
            store.exists(bad)


def test_check_writable(store):
    store.check_writable()
    assert store.listdir() == []  # the probe is gone


def test_pickled_storage_rebuilds_and_works(store):
    store.write_text("k.txt", "v")
    again = pickle.loads(pickle.dumps(store))
    assert again.uri == store.uri and again.local_root == store.local_root and again.read_text("k.txt") == "v"


# --------------------------------------------------------------------------- local copies


def test_local_copy_of_local_storage_is_the_path_itself(tmp_path):
    s = Storage(str(tmp_path / "store"))
    s.write_text("d/f.txt", "x")
    assert s.local_copy("d") == tmp_path.resolve() / "store" / "d"
    src = s.local_root / "stages" / "01"  # work done in place, then "uploaded": nothing to copy
    _make_tree(src)
    s.upload_dir(src, "stages/01")
    assert s.download_dir("stages/01", src) == src


def test_local_copy_downloads_once_and_refreshes_when_storage_differs(s3_endpoint, tmp_path):
    s = Storage(s3_uri(s3_endpoint, _bucket(s3_endpoint)), cache_dir=tmp_path / "cache")
    files = _make_tree(tmp_path / "src")
    s.upload_dir(tmp_path / "src", "stages/01/model")
    mirror = s.local_copy("stages/01/model")
    assert mirror == s.local_root / "stages/01/model" and _tree(mirror) == files
    inode = (mirror / "config.json").stat().st_ino
    assert s.local_copy("stages/01/model") == mirror and (mirror / "config.json").stat().st_ino == inode

    (mirror / "model.safetensors").write_bytes(b"truncated")  # an interrupted download
    assert _tree(s.local_copy("stages/01/model")) == files
    s.write_text("stages/01/model/extra.json", "{}")  # storage gained a file
    assert (s.local_copy("stages/01/model") / "extra.json").read_text() == "{}"

    single = s.local_copy("stages/01/model/sub/deeper/notes.md")
    assert single.read_bytes() == files["sub/deeper/notes.md"]
    assert not any((s.local_root.parent / (s.local_root.name + ".work")).glob("*.partial-*"))
    s.delete("stages/01")
    assert not (s.local_root / "stages/01").exists()


def test_file_uri_work_in_place(tmp_path):
    s = Storage((tmp_path / "store").as_uri())
    s.write_text("x/y.txt", "1")
    assert s.local_copy("x") == tmp_path.resolve() / "store" / "x"


# --------------------------------------------------------------------------- not writable


def test_missing_bucket_is_named_with_its_fix(s3_endpoint, tmp_path):
    s = Storage(s3_uri(s3_endpoint, "no-such-bucket"), cache_dir=tmp_path)
    with pytest.raises(ValueError) as err:
        s.check_writable()
    msg = str(err.value)
    for fragment in ("storage.path", "no-such-bucket", "is not writable", "bucket exists", "credentials"):
        assert fragment in msg, msg


def test_credentials_in_the_uri_never_reach_the_message(s3_endpoint, tmp_path):
    uri = f"s3://AKIAFAKE:hunter2secret@no-such-bucket/p?endpoint_override={s3_endpoint}&scheme=http"
    with pytest.raises(ValueError) as err:
        Storage(uri, cache_dir=tmp_path).check_writable()
    assert "no-such-bucket" in str(err.value) and "hunter2secret" not in str(err.value)


def test_local_path_under_a_file_is_named(tmp_path):
    (tmp_path / "plain-file").write_text("x")  # fails for root too, unlike a read-only dir
    with pytest.raises(ValueError, match=r"storage.path = .*plain-file/runs' is not writable"):
        Storage(str(tmp_path / "plain-file" / "runs")).check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_local_dir_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ValueError, match=r"storage.path = .* is not writable .*--set storage.path="):
        Storage(str(ro / "runs")).check_writable()


# --------------------------------------------------------------------------- Ray Train


@pytest.mark.ray
def test_ray_train_storage_takes_the_uri(s3_endpoint, tmp_path):
    """Ray Train resolves RunConfig.storage_path with this StorageContext, and a worker's
    report persists its checkpoint with persist_current_checkpoint: both need no running Ray."""
    from ray.train import Checkpoint
    from ray.train.v2._internal.execution.storage import StorageContext

    s = Storage(s3_uri(s3_endpoint, _bucket(s3_endpoint)), cache_dir=tmp_path / "cache")
    ctx = StorageContext(storage_path=s.ray_storage_path("ray"), experiment_dir_name="01-sft")
    assert ctx.storage_filesystem.type_name == "s3" and s.exists("ray/01-sft/.validate_storage_marker")

    files = _make_tree(tmp_path / "ckpt")
    persisted = ctx.persist_current_checkpoint(Checkpoint.from_directory(tmp_path / "ckpt"), "checkpoint_000")
    assert _tree(s.local_copy("ray/01-sft/checkpoint_000")) == files
    # a checkpoint named by URI string alone (how a resume path travels) downloads too
    again = Checkpoint(s.ray_storage_path("ray/01-sft/checkpoint_000"))
    assert again.path == persisted.path and _tree(Path(again.to_directory(tmp_path / "dl"))) == files

    with pytest.raises(ValueError, match="scheme 'http/ray'"):  # a naive join lands in the query
        StorageContext(storage_path=s.uri + "/ray", experiment_dir_name="x")


# --------------------------------------------------------------------------- moving work between nodes


def test_a_path_published_by_one_node_is_localized_on_another(s3_endpoint, tmp_path):
    """Node A publishes a dir from its mirror; node B (another mirror) gets the same path
    from the driver's pickled Storage and reads it via `localize`."""
    uri = s3_uri(s3_endpoint, _bucket(s3_endpoint))
    a = Storage(uri, cache_dir=tmp_path / "node-a")
    model = a.local_root / "stages" / "01-sft-abc" / "model"
    files = _make_tree(model)
    a.publish(model)
    b = pickle.loads(pickle.dumps(a))  # what a Ray task receives
    b.local_root = tmp_path / "node-b" / a.local_root.name  # as on a node whose cache dir differs
    here = Path(b.localize(str(model)))
    assert here != model and here.is_relative_to(b.local_root) and _tree(here) == files
    assert b.localize("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a hub id passes through
    local = Storage(str(tmp_path / "plain"))
    assert local.localize(str(model)) == str(model)  # local storage: nothing moves


def test_publish_uploads_the_marker_last_and_keeps_it_locally(s3_endpoint, tmp_path):
    store = Storage(s3_uri(s3_endpoint, _bucket(s3_endpoint)), cache_dir=tmp_path)
    blend = store.local_root / "blends" / "b-1"
    _make_tree(blend)
    (blend / "manifest.json").write_text('{"rows": 3}')
    store.publish(blend, marker="manifest.json")
    assert json.loads(store.read_text("blends/b-1/manifest.json")) == {"rows": 3}
    assert store.exists("blends/b-1/model.safetensors") and (blend / "manifest.json").exists()


def test_located_paths_resolve_on_the_reading_node(s3_endpoint, tmp_path):
    from tinyreason.storage import Located, resolve

    store = Storage(s3_uri(s3_endpoint, _bucket(s3_endpoint)), cache_dir=tmp_path / "driver")
    tok = store.local_root / "stages" / "s" / "tokenizer"
    files = _make_tree(tok)
    store.publish(tok)
    ref = pickle.loads(pickle.dumps(store.located(str(tok))))
    assert isinstance(ref, Located) and ref == str(tok)  # reads as the path in logs
    ref.store.local_root = tmp_path / "worker" / store.local_root.name
    assert _tree(Path(resolve(ref))) == files and Path(resolve(ref)).is_relative_to(tmp_path / "worker")
    assert Storage(str(tmp_path / "plain")).located("x") == "x" and resolve("x") == "x"
