#!/usr/bin/env bash
# Fuzzes the whole config path (tests/fuzz/fuzz_targets/config.rs), then a state file's
# path to what `status` prints (fuzz_targets/state.rs), each for a bounded time:
#
#     tests/fuzz/run.sh [SECONDS]      # each, default 60
#
# Needs the nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz, which is
# installed from crates.io when missing. Seeds: the committed corpus in
# tests/fuzz/corpus/config (hostile YAML) and every file under examples/; for the state file,
# tests/fuzz/corpus/state. New inputs go to target/fuzz-corpus(-state), a crash to
# tests/fuzz/artifacts/ (the script then fails).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "tests/fuzz/run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

mkdir -p target/fuzz-corpus target/fuzz-corpus-state
# -rss_limit_mb: the fuzzer itself plus protector's parser; an input that makes the parser
# grow past it is a failure, as is one that takes over -timeout seconds.
cargo +nightly fuzz run --fuzz-dir tests/fuzz config \
    target/fuzz-corpus tests/fuzz/corpus/config examples -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
    -print_final_stats=1
cargo +nightly fuzz run --fuzz-dir tests/fuzz state \
    target/fuzz-corpus-state tests/fuzz/corpus/state -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
    -print_final_stats=1
echo "fuzz: no crash, hang or runaway memory in ${secs} s of each target"
