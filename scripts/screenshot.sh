#!/usr/bin/env bash
# Runs the window under Xvfb in demo mode (loopback only, discovery off) and
# saves PNGs of the library, the detail view, a download in progress, the
# Remove confirmation, the peers panel, Play, the last-copy warning and the
# sharing settings into target/screenshots/; the library, play, last-copy
# and settings ones are copied to docs/ for the README.
# Needs: apt-get install -y xvfb
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/screenshots
rm -rf "$out" && mkdir -p "$out"
cargo build --release -p lanspread
display=:97
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
sleep 1
data=$(mktemp -d)
DISPLAY=$display WAYLAND_DISPLAY= timeout 180 \
    ./target/release/lanspread --data "$data" demo --screenshots "$out" > "$out/run.log" 2>&1
rm -rf "$data"
ls "$out"/*.png
for shot in library play last-copy settings; do
    cp "$out/$shot.png" "docs/$shot.png"
done
