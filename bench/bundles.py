#!/usr/bin/env python3
"""Bundles: how long validation takes for thousands of workstreams over a large tree, and how
close parallel workstreams come to the ideal.

1. `git pipeline plan` of a bundle of W workstreams (each with its own folder as scope, a chain
   of dependencies every tenth one) on a repository of F files: median wall time of 5 runs.
2. `git pipeline run --bundle` of N independent workstreams whose builders each sleep S seconds,
   with --jobs J: wall time against the ideal, S times ceil(N / J). Targets: 8 with --jobs 4
   under 4.6 s, 32 with --jobs 8 under 8.8 s (S = 2).

usage: python3 bench/bundles.py [--workstreams 1000,5000] [--files 20000] [--sleep 2]
                               [--parallel 3x1,3x3,8x4,32x8]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_overhead import AGENT, ROOT, bench_env as env_for, run  # noqa: E402


def make_repo(tmp, files, env, config):
    repo = os.path.join(tmp, "repo")
    subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), str(files), repo],
                   check=True, env=env)
    with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
        f.write(config)
    run(["git", "add", ".pipeline.toml"], repo, env)
    run(["git", "commit", "-q", "-m", "config"], repo, env)
    return repo


def bench_validation(binary, workstreams, files):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = env_for(tmp)
        repo = make_repo(tmp, files, env, f"""version = 1
[agents.builder]
command = ["{AGENT}"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
""")
        folders = max(1, files // 100)
        for w in workstreams:
            ws = [{"id": f"w{i}", "task": f"work on part {i}",
                   "scope": [f"src/d{i % folders:04d}/f{i:06d}*"],
                   "depends_on": [f"w{i - 1}"] if i % 10 and i else []}
                  for i in range(w)]
            path = os.path.join(tmp, f"bundle-{w}.json")
            with open(path, "w") as f:
                json.dump({"version": 1, "workstreams": ws}, f)
            run([binary, "plan", path], repo, env)  # warm
            times = []
            for _ in range(5):
                t = time.perf_counter()
                run([binary, "plan", path], repo, env)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            run(["git", "ls-tree", "-r", "--name-only", "HEAD"], repo, env)
            ls = time.perf_counter() - t
            print(f"plan: {w:>6} workstreams, {files} files: {statistics.median(times) * 1000:8.1f} ms"
                  f"   (git ls-tree -r alone: {ls * 1000:.1f} ms)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_parallel(binary, sleep, cases):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = env_for(tmp)
        repo = make_repo(tmp, 3200, env, f"""version = 1
[agents.builder]
command = ["{AGENT}", "*:run:echo x >> src/d$PIPELINE_WORKSTREAM/new.txt", "*:sleep:{sleep}"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
""")
        run([binary, "trust"], repo, env)
        for n, jobs in cases:
            path = os.path.join(tmp, f"bundle-{n}.json")
            with open(path, "w") as f:
                json.dump({"version": 1, "workstreams": [
                    {"id": f"{i:04d}", "task": f"part {i}", "scope": [f"src/d{i:04d}/**"]}
                    for i in range(n)]}, f)
            times = []
            for _ in range(3):
                t = time.perf_counter()
                run([binary, "-q", "run", "--bundle", path, "--jobs", str(jobs)], repo, env)
                times.append(time.perf_counter() - t)
            best = statistics.median(times)
            ideal = sleep * -(-n // jobs)
            print(f"run --bundle, {n} workstreams sleeping {sleep}s, --jobs {jobs}: {best:6.2f} s"
                  f"   (ideal {ideal:.2f} s; overhead {best - ideal:+.2f} s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workstreams", default="1000,5000")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--sleep", type=float, default=2.0)
    ap.add_argument("--parallel", default="3x1,3x3,8x4,32x8",
                    help="workstreams x jobs, comma separated")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"build first: cargo build --release ({args.bin} missing)")
    bench_validation(args.bin, [int(w) for w in args.workstreams.split(",")], args.files)
    cases = [tuple(int(x) for x in c.split("x")) for c in args.parallel.split(",")]
    bench_parallel(args.bin, args.sleep, cases)


if __name__ == "__main__":
    main()
