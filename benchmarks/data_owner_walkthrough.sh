#!/usr/bin/env bash
# A data owner's walkthrough (README "Publishing protected photos"): a folder of photos and captions in,
# protected PNGs and captions out in the same layout, verify-protection, and a victim trained on the
# published files next to a clean one trained on the original folder (same recipe and seed).
#   bash benchmarks/data_owner_walkthrough.sh [PHOTOS_DIR LAYOUT] [METHOD]
# Without arguments the photos are shapes-captions (small) written as a Karpathy-layout folder by
# benchmarks/own_data_walkthrough.py.
set -euo pipefail
MM="${MM:-.venv/bin/mmunlearn}"
OUT=runs/owner
METHOD="${3:-mem}"
if [ $# -ge 2 ]; then PHOTOS="$1"; LAYOUT="$2"; else
    PHOTOS=runs/walkthrough/karpathy/data; LAYOUT=karpathy
    [ -f "$PHOTOS/dataset_flickr8k.json" ] || .venv/bin/python benchmarks/own_data_walkthrough.py --layouts karpathy
fi
rm -rf "$OUT"
set -x
time $MM protect --dataset "$PHOTOS" --layout "$LAYOUT" --method "$METHOD" --out "$OUT/protection" --export "$OUT/published" --quiet
$MM verify-protection --original "$PHOTOS" --layout "$LAYOUT" --protected "$OUT/published"
$MM train --dataset "$OUT/published" --layout "$LAYOUT" --seed 1 --out "$OUT/victim" --quiet
$MM train --dataset "$PHOTOS" --layout "$LAYOUT" --seed 1 --out "$OUT/clean-victim" --quiet
