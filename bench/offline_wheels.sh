#!/usr/bin/env bash
# A wheel bundle for running the benchmarks (bench/bench_gpu.py) on an offline GPU machine that
# already has CUDA torch, accelerate, tokenizers, huggingface_hub, numpy, pandas, pyarrow, aiohttp
# (the lent H100/H200 image: /work/.library/device/KINDS.md). It carries only what such a machine
# lacks or has too old, for CPython 3.12 x86-64, in <= 60 MB. Output: $REPO/.whl/*.whl (git-ignored).
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:platform
#   python3 bench/bench_gpu.py
set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/.." && pwd)}
PY=${PY:-$REPO/.venv/bin/python}   # any pip-capable python; the venv also has torch (CPU) for deepspeed
WORK=${WORK:-/tmp/offline_wheels_work}
OUT=$REPO/.whl
LIMIT_BYTES=$((60 * 1000 * 1000))   # 64 MiB per call for everything carried, repo ~1.5 MB

rm -rf "$WORK"; mkdir -p "$WORK/dl" "$WORK/ds" "$WORK/ray"
mkdir -p "$OUT"; rm -f "$OUT"/*.whl   # .gitignore keeps it out of git and of Ray's working_dir uploads

# 1. Binary wheels for CPython 3.12 manylinux x86-64 (flags from /work/.library/device/README.md),
#    --no-deps: we pick the dependency set by hand, one version each, versions as in the venv.
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
PKGS=(
  ray==2.60.0                  # repacked below (79 MB as published)
  transformers==5.23.0         # device has 5.17, project needs 5.23; hub>=1.31/tokenizers 0.23.x on device suffice
  trl==1.16.0
  datasets==5.2.0
  pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0    # pydantic(-core) 2.14 need >=4.16; device's version not known, tiny, safe to shadow
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1  # ray core dep
  tensorboardX==2.6.5          # ray[train] dep
  dill==0.4.1 multiprocess==0.70.19   # datasets deps (dill<0.4.2, multiprocess<0.70.20)
  hjson==3.1.0                 # deepspeed dep
)
"$PY" -m pip download $PLAT -d "$WORK/dl" "${PKGS[@]}"

# 2. deepspeed 0.19.8 exists only as an sdist. Build a pure-python wheel with no ops compiled
#    (DS_BUILD_OPS=0: ops are JIT-built on the device when used) and without build isolation, so
#    pip does not pull a CUDA torch into a build env; the venv's CPU torch is enough for setup.py.
#    --no-cache-dir: build from the sdist, not a wheel cached earlier. Result: py3-none-any.
DS_BUILD_OPS=0 "$PY" -m pip wheel --no-cache-dir --no-deps --no-build-isolation deepspeed==0.19.8 -w "$WORK/ds"

# 3. Repack ray: drop the Java jars, the dashboard web UI, rllib/serve/llm, strip the symbol tables
#    of _raylet.so/raylet/gcs_server, and rewrite .dist-info/RECORD (rows removed / rehashed).
#    79 MB -> ~37 MB. See repack_ray.py's header for why each piece is safe to drop.
cat > "$WORK/repack_ray.py" <<'PYEOF'
"""Repack the ray wheel so the bundle fits the ~60 MB carry limit.

usage: repack_ray.py SRC.whl DST.whl
- drops whole subtrees (DROP) and their RECORD lines;
- strips the symbol tables (.symtab/.strtab, not .dynsym) of the three big ELF files
  (STRIP) with `strip --strip-unneeded`, and rewrites their RECORD hash and size;
- everything else is copied byte for byte (recompressed at level 9), modes kept.
"""
import base64, csv, hashlib, io, os, subprocess, sys, tempfile, zipfile

DROP = (
    "ray/jars/",                    # Java worker (ray_dist.jar, 32 MB); only used if `java` is on PATH
    "ray/dashboard/client/build/",  # dashboard web UI assets; the HTTP head catches their absence
    "ray/rllib/",                   # RL library; ray.train/ray.data/ray.tune never import it at load time
    "ray/serve/",                   # model serving; imported only by `ray serve` CLI (in try/except),
                                    # the dashboard's serve module (inside handlers) and ray.data.llm
    "ray/llm/",                     # LLM serving/batch; imported only by ray.data.llm (not by ray.data)
)
STRIP = ("ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet")

src, dst = sys.argv[1], sys.argv[2]

def strip(data: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "f")
        open(p, "wb").write(data)
        subprocess.run(["strip", "--strip-unneeded", p], check=True)
        return open(p, "rb").read()

def rec_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

changed = {}
n_drop = b_drop = 0
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
    infos = zin.infolist()
    # the wheel's own RECORD is <name>-<ver>.dist-info/RECORD at the top level; ray also vendors
    # packages (ray/thirdparty_files/*.dist-info/RECORD) whose RECORDs must be left alone
    record_name = next(i.filename for i in infos
                       if i.filename.count("/") == 1 and i.filename.endswith(".dist-info/RECORD"))
    for info in infos:
        name = info.filename
        if name.startswith(DROP):
            n_drop += 1; b_drop += info.compress_size
            continue
        if name == record_name:
            continue
        data = zin.read(name)
        if name in STRIP:
            new = strip(data)
            print(f"stripped {name}: {len(data)/1e6:.1f} -> {len(new)/1e6:.1f} MB")
            data = new
            changed[name] = (rec_hash(data), str(len(data)))
        zi = zipfile.ZipInfo(name, date_time=info.date_time)
        zi.external_attr = info.external_attr   # keeps +x on raylet, gcs_server
        zout.writestr(zi, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    rows = [r for r in csv.reader(io.StringIO(zin.read(record_name).decode())) if r]
    kept = []
    for r in rows:
        if r[0].startswith(DROP):
            continue
        if r[0] in changed:
            r = [r[0], *changed[r[0]]]
        kept.append(r)
    buf = io.StringIO(); csv.writer(buf, lineterminator="\n").writerows(kept)
    zi = zipfile.ZipInfo(record_name, date_time=zin.getinfo(record_name).date_time)
    zi.external_attr = zin.getinfo(record_name).external_attr
    zout.writestr(zi, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
print(f"dropped {n_drop} files ({b_drop/1e6:.1f} MB compressed); RECORD {len(rows)} -> {len(kept)} rows; "
      f"{dst}: {os.path.getsize(dst)/1e6:.1f} MB")
PYEOF
python3 "$WORK/repack_ray.py" "$WORK"/dl/ray-2.60.0-*.whl "$WORK/ray/$(basename "$WORK"/dl/ray-2.60.0-*.whl)"
rm "$WORK"/dl/ray-2.60.0-*.whl

# 4. Collect, then check: one version per package, RECORDs consistent, total size under the limit.
cp "$WORK"/dl/*.whl "$WORK"/ds/*.whl "$WORK"/ray/*.whl "$OUT"/
dups=$(ls "$OUT" | sed -E 's/-[0-9].*//' | tr 'A-Z_' 'a-z-' | sort | uniq -d)
[ -z "$dups" ] || { echo "two versions of: $dups" >&2; exit 1; }
ls "$OUT"/deepspeed-*-py3-none-any.whl >/dev/null   # must be pure python
cat > "$WORK/verify_record.py" <<'PYEOF'
"""Check every file in a wheel is listed in its RECORD with the right sha256 and size, and vice versa."""
import base64, csv, hashlib, io, sys, zipfile
bad = 0
for whl in sys.argv[1:]:
    z = zipfile.ZipFile(whl)
    names = [n for n in z.namelist() if not n.endswith("/")]
    rec = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
    rows = {r[0]: r for r in csv.reader(io.StringIO(z.read(rec).decode())) if r}
    for n in names:
        if n == rec: continue
        r = rows.pop(n, None)
        d = z.read(n)
        h = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        if r is None or r[1] != h or r[2] != str(len(d)):
            bad += 1; print("MISMATCH", whl, n, r and r[1:])
    rows.pop(rec, None)
    for n in rows: bad += 1; print("IN RECORD, NOT IN WHEEL", whl, n)
    print("ok" if not bad else "BAD", whl, len(names), "files")
sys.exit(1 if bad else 0)
PYEOF
python3 "$WORK/verify_record.py" "$OUT"/*.whl >/dev/null
total=$(cat "$OUT"/*.whl | wc -c)
ls -l "$OUT"/*.whl | awk '{printf "%10d  %s\n", $5, $9}'
echo "total: $total bytes ($(awk "BEGIN{printf \"%.1f\", $total/1e6}") MB)"
[ "$total" -le "$LIMIT_BYTES" ] || { echo "bundle over 60 MB" >&2; exit 1; }

# 5. Optional: install-only check with a local CPython 3.12 (no imports of ray/torch).
# (a pyenv shim named python3.12 may exist and fail, so each candidate must actually run)
PY312=${PY312:-}
if [ -z "$PY312" ]; then
  for c in $(command -v python3.12 || true) /usr/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
    if [ -x "$c" ] && "$c" -V >/dev/null 2>&1; then PY312=$c; break; fi
  done
fi
if [ -n "$PY312" ]; then
  rm -rf "$WORK/site_check"
  PIP_CONFIG_FILE=/dev/null "$PY312" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$WORK/site_check" "$OUT"/*.whl && echo "install check with $PY312: ok"
else
  echo "no python3.12 here: install check skipped"
fi
