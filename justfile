# lanspread's day-to-day commands. `just check` is exactly what CI runs.

# Open the window, or run a subcommand: `just run catalog`.
run *ARGS:
    cargo run -p lanspread -- {{ARGS}}

# Every test in the workspace (the README's test command).
test:
    cargo test --workspace

# Faster local test runs, when cargo-nextest is installed.
nextest:
    cargo nextest run --workspace

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs: fmt, clippy with warnings denied, then the tests.
check:
    bash .ci/run

# The catalog, headless.
catalog:
    cargo run -p lanspread -- catalog

# Download goodput (1 and 3 seeders), downloader peak RSS and hashing speed
# beside b3sum, on loopback, with release builds. Figures go in the README.
bench:
    cargo build --release -p lanspread -p lanspread-tests --bins
    ./target/release/lanspread-bench

# The whole CI run, as CI runs it.
ci:
    bash .ci/run

# PNGs of the main views, from the demo under Xvfb (needs the xvfb package).
screenshot:
    bash scripts/screenshot.sh

# The LAN lab benchmark (root): goodput over shaped links, % of the link and
# of QUIC's ceiling, for the four cases in the README.
lab-bench:
    cargo build --release -p lanspread -p lanspread-tests --bins
    ./target/release/lanspread-lab-bench

# The window with three demo PCs in this process (loopback only).
demo:
    cargo run --release -p lanspread -- demo

# Coverage-guided fuzzing of what lanspread reads from peers, organisers and
# disks (frames, manifests, paths, catalogs, version.ini, archives): each
# target for SECS seconds (default 60). Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
fuzz SECS="60":
    for target in frame manifest path catalog version_ini archive; do cargo +nightly fuzz run "$target" -- -max_total_time={{SECS}} -rss_limit_mb=2048 || exit 1; done
