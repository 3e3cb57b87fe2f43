#!/usr/bin/env bash
# Create .venv with eoembed and what one profile needs:
#   demo  the sample demo only: the core package, the sample scene and matplotlib for sample.png
#         (eoembed[sample,plot]: no torch, about 0.5 GB);
#   all   (default) everything the demo and the test suite need: every extra, test tools, the
#         pinned torch pair (several GB). A superset of demo.
# Each profile keeps a stamp of the pyproject.toml and constraints.txt it installed: a second
# run only re-checks them, `all` satisfies `demo`, and either profile installs on top of the
# other without removing anything. Works offline against a package mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-all}
case "$profile" in
    demo) extras="sample,plot" ;;
    all) extras="all,test" ;;
    *) echo "usage: bash scripts/setup.sh [demo|all]  (got: $profile)" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
current() { [ -f ".venv/.eoembed-$1" ] && [ "$(cat ".venv/.eoembed-$1")" = "$want" ]; }
if ! current all && ! current "$profile"; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[$extras]"
    if [ "$profile" = all ]; then
        # eoembed[satmae]: rshf declares torchaudio and openai-clip, which would move the torch
        # pair; its SatMAE code needs only transformers beside what [all] installs.
        .venv/bin/python -m pip install --quiet -c constraints.txt "transformers>=4.41"
        .venv/bin/python -m pip install --quiet -c constraints.txt --no-deps "rshf>=0.2.2"
    fi
    echo "$want" > ".venv/.eoembed-$profile"
fi
# GDAL's command-line tools (gdalinfo, ogrinfo), which tests/test_gdal_formats.py uses to open
# exports as QGIS users' GDAL does. Best effort, for the test profile: root with apt-get only;
# never fails setup.
if [ "$profile" = all ] && ! command -v gdalinfo >/dev/null 2>&1 \
        && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -q gdal-bin || { apt-get update -q && apt-get install -y -q gdal-bin; }; } \
        >/dev/null 2>&1 || echo "setup: gdal-bin not installed; GDAL CLI tests will skip" >&2
fi
