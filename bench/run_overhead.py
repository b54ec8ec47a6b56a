#!/usr/bin/env python3
"""Run overhead: `git pipeline run` with instant agents (the builder edits one file, the verifier
approves, no gates) against the bare git sequence the same work needs:
`git worktree add -b`, edit, `git add -A`, `git commit`, `git notes add`, `git worktree remove`.

Pairs are interleaved (A B, then B A) because on this machine's unjournaled ext4, creating files
right after deleting many is slowed by the kernel; both sides then suffer alike. Reports medians
of whole-process wall time and the median of the per-pair ratios.

usage: python3 bench/run_overhead.py [--files 1000,20000] [--pairs 15] [--bin PATH]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AGENT = os.path.join(ROOT, "fixtures", "agents", "fake-agent")


def run(cmd, cwd, env):
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", default="1000,20000")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"build first: cargo build --release ({args.bin} missing)")
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", tempfile.gettempdir()],
                        capture_output=True, text=True).stdout.strip()
    print(f"filesystem of {tempfile.gettempdir()}: {fs or 'unknown'}")
    print(f"{'files':>7} {'pipeline ms':>12} {'bare git ms':>12} {'ratio':>6}")
    for n in [int(x) for x in args.files.split(",")]:
        tmp = tempfile.mkdtemp(prefix="gp-bench-")
        try:
            bench_size(n, tmp, args)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_size(n, tmp, args) -> None:
    home = os.path.join(tmp, "home")
    os.makedirs(os.path.join(home, ".config"))
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
               GIT_CONFIG_GLOBAL=os.path.join(home, ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
               LC_ALL="C")
    for v in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(v, None)
    repo = os.path.join(tmp, "repo")
    subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), str(n), repo],
                   check=True, env=env)
    with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
        f.write(f"""version = 1
[scope]
allow = ["src/**"]
[agents.builder]
command = ["{AGENT}", "*:append:src/d0000/f000000.txt:edited"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
""")
    run(["git", "add", ".pipeline.toml"], repo, env)
    run(["git", "commit", "-q", "-m", "config"], repo, env)
    run([args.bin, "trust"], repo, env)
    wt = os.path.join(tmp, "bare-wt")

    def pipeline():
        run([args.bin, "-q", "run", "fix the typo"], repo, env)

    counter = [0]

    def bare():
        counter[0] += 1
        run(["git", "worktree", "add", "-q", "-b", f"bench/{counter[0]}", wt, "HEAD"], repo, env)
        with open(os.path.join(wt, "src/d0000/f000000.txt"), "a") as f:
            f.write("edited\n")
        run(["git", "add", "-A"], wt, env)
        run(["git", "commit", "-q", "-m", "fix the typo"], wt, env)
        run(["git", "notes", "--ref=bench", "add", "-f", "-m", "{}", "HEAD"], wt, env)
        run(["git", "worktree", "remove", "--force", wt], repo, env)

    pipeline(), bare()  # warm caches once
    a, b = [], []
    for i in range(args.pairs):
        order = [(pipeline, a), (bare, b)] if i % 2 == 0 else [(bare, b), (pipeline, a)]
        for fn, out in order:
            out.append(timed(fn))
    ratios = [x / y for x, y in zip(a, b)]
    print(f"{n:>7} {statistics.median(a) * 1000:>12.1f} {statistics.median(b) * 1000:>12.1f} "
          f"{statistics.median(ratios):>6.2f}")


if __name__ == "__main__":
    main()
