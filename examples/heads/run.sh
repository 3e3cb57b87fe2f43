#!/usr/bin/env bash
# The worked example, end to end, offline: export -> train -> predict -> compare.
# Run from the repository root: bash examples/heads/run.sh (about two minutes on 2 cores).
# Outputs go to exports/heads/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../.."

SITES=examples/heads/data/sites.csv
WINDOW=(--start 2015-06-23 --end 2016-06-11 --provider sample)

# 1. Embed the 144 sites once: pooled vectors and 8 x 8 grids of 80 m cells.
eoembed export -m mosaiks --regions "$SITES" --buffer-m 320 "${WINDOW[@]}" \
    --out exports/heads/pooled -q
eoembed export -m mosaiks --regions "$SITES" --buffer-m 320 "${WINDOW[@]}" \
    --output grid --format zarr --out exports/heads/grid -q

# 2. Heads: land share per square (gradient boosting), land/water per 20 m pixel (decoder).
eoembed train --config examples/heads/train.yaml
eoembed train --config examples/heads/segment.yaml

# 3. Maps: the decoder over every exported grid, and over a new 5 km square never exported.
eoembed predict --head exports/heads/shore -e exports/heads/grid --out exports/heads/shore.tif
eoembed predict --head exports/heads/shore --lon -75.62 --lat 37.67 --buffer-m 2560 \
    --out exports/heads/shore_region.tif --png exports/heads/shore_region.png
eoembed predict --head exports/heads/land -e exports/heads/pooled \
    --out exports/heads/land.parquet

# 4. Compare MOSAIKS with an untrained ViT (weights=random needs no download; with
#    `eoembed weights download ssl4eo-s12-vit-s16-dino` drop the --arg to use the real one).
eoembed export -m ssl4eo-s12-vit-s16-dino --arg weights=random --regions "$SITES" \
    --buffer-m 320 "${WINDOW[@]}" --out exports/heads/vit-random -q
eoembed compare --config examples/heads/compare.yaml
