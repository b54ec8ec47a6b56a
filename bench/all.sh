#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, in one command. Set TMPDIR to choose the filesystem
# the repositories are made on (TMPDIR=/dev/shm for tmpfs); the scripts print which it is.
#
#   bench/all.sh                 # everything (about 15 minutes on 2 cores)
#   PAIRS=5 bench/all.sh         # fewer pairs per repository
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
# Where cargo put it: CARGO_TARGET_DIR or build.target-dir may name another folder.
target=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target:-$PWD/target}/release/git-pipeline"
pairs=${PAIRS:-7}
repos=${REPOS:-gen:1000,gen:20000,gen:100000,clone:$HOME/.pyenv,tree:$HOME/.cargo/registry/src}

echo "== machine"
nproc; uname -sr; git --version
echo
echo "== run overhead (bench/run_overhead.py)"
python3 bench/run_overhead.py --repos "$repos" --pairs "$pairs" --bin "$bin"
echo
echo "== scope check and changed-path listing (benches/scope.rs)"
wt=$(mktemp -d "${TMPDIR:-/tmp}/gp-bench-listing.XXXXXX")
python3 fixtures/gen_repo.py 100000 "$wt/repo" > /dev/null
git -C "$wt/repo" worktree add -q "$wt/wt" HEAD
for i in $(seq 0 100 99900); do
  printf 'changed\n' >> "$wt/wt/$(printf 'src/d%04d/f%06d.txt' $((i / 100)) "$i")"
done
sleep 1.1   # past the second of the checkout, as an agent's edits would be
SNAPSHOT_WORKTREE="$wt/wt" cargo bench --quiet --bench scope
rm -rf "$wt"
echo
echo "== views (bench/views.py)"
python3 bench/views.py --bin "$bin"
echo
echo "== bundles (bench/bundles.py)"
python3 bench/bundles.py --bin "$bin"
echo
echo "== the OS sandbox (bench/sandbox.py)"
python3 bench/sandbox.py --bin "$bin"
echo
echo "== warm worktrees (bench/warm_worktrees.py; RIPGREP=<local clone> to skip the download)"
python3 bench/warm_worktrees.py --bin "$bin" ${RIPGREP:+--ripgrep "$RIPGREP"}
