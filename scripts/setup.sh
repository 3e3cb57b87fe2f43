#!/usr/bin/env bash
# Create .venv with eoembed and everything its demo and tests need. Idempotent: a second run
# only re-checks that the install is complete. Works offline against a package mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.eoembed-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[all,test]"
    # eoembed[satmae]: rshf declares torchaudio and openai-clip, which would move the torch
    # pair; its SatMAE code needs only transformers beside what [all] installs.
    .venv/bin/python -m pip install --quiet -c constraints.txt "transformers>=4.41"
    .venv/bin/python -m pip install --quiet -c constraints.txt --no-deps "rshf>=0.2.2"
    echo "$want" > "$stamp"
fi
# GDAL's command-line tools (gdalinfo, ogrinfo), which tests/test_gdal_formats.py uses to open
# exports as QGIS users' GDAL does. Best effort: root with apt-get only; never fails setup.
if ! command -v gdalinfo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -q gdal-bin || { apt-get update -q && apt-get install -y -q gdal-bin; }; } \
        >/dev/null 2>&1 || echo "setup: gdal-bin not installed; GDAL CLI tests will skip" >&2
fi
