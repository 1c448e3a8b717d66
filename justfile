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
