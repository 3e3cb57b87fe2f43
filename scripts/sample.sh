#!/usr/bin/env bash
# Set up from nothing, then embed the bundled Sentinel-2 sample with MOSAIKS: prints the pooled
# embedding and writes sample.png (input RGB beside a PCA picture of the embedding grid).
# Installs only what that needs (setup.sh's demo profile: no torch); scripts/test.sh adds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/eoembed embed --model mosaiks --provider sample \
    --lon -75.70 --lat 37.70 --buffer-m 1280 --start 2015-06-23 --end 2016-06-11 \
    --png sample.png "$@"
