#!/usr/bin/env python3
"""Views and housekeeping at scale:

1. `git pipeline status` (text and --json) with R recorded runs (copies of one real run's
   record under fresh ids). Target: under 100 ms at 2,000.
2. `git pipeline verify` over C attested commits (made with git fast-import, each with its
   attestation note). Target: under 1 s at 10,000. Against `git log --notes` of the same range.
3. `git pipeline clean` of O orphaned run worktrees (worktrees and branches named and locked like
   a run's, with no record), against the `git worktree remove -f -f` and `git branch -D` calls
   the same removal needs.

usage: python3 bench/views.py [--runs 2000] [--commits 10000] [--orphans 200] [--files 100]
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
from run_overhead import AGENT, ROOT, bench_env, run  # noqa: E402


def median_time(fn, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def new_repo(tmp, env, files):
    repo = os.path.join(tmp, "repo")
    subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), str(files),
                    repo], check=True, env=env)
    with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
        f.write(f"""version = 1
[agents.builder]
command = ["{AGENT}", "*:append:src/d0000/f000000.txt:edited"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
""")
    run(["git", "add", ".pipeline.toml"], repo, env)
    run(["git", "commit", "-q", "-m", "config"], repo, env)
    return repo


def bench_status(binary, runs, files):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = bench_env(tmp)
        repo = new_repo(tmp, env, files)
        run([binary, "trust"], repo, env)
        run([binary, "-q", "run", "fix the typo"], repo, env)
        runs_dir = os.path.join(repo, ".git", "pipeline", "runs")
        (real,) = os.listdir(runs_dir)
        with open(os.path.join(runs_dir, real, "run.json")) as f:
            record = json.load(f)
        for i in range(runs - 1):
            rid = f"20250101-{i // 1000:06d}-{i % 1000:03d}a"
            d = os.path.join(runs_dir, rid)
            os.makedirs(d)
            record["run_id"] = rid
            with open(os.path.join(d, "run.json"), "w") as f:
                json.dump(record, f)
        text = median_time(lambda: run([binary, "status"], repo, env))
        as_json = median_time(lambda: run([binary, "status", "--json"], repo, env))
        print(f"status, {runs} runs: {text * 1000:.1f} ms; --json {as_json * 1000:.1f} ms",
              flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_verify(binary, commits, fmt):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = bench_env(tmp)
        repo = os.path.join(tmp, "repo")
        run(["git", "init", "-q", "-b", "main", repo], tmp, env)
        with open(os.path.join(repo, "a.txt"), "w") as f:
            f.write("a\n")
        run(["git", "add", "a.txt"], repo, env)
        run(["git", "commit", "-q", "-m", "root"], repo, env)
        root = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, capture_output=True,
                              text=True, check=True).stdout.strip()
        tree = subprocess.run(["git", "rev-parse", "HEAD^{tree}"], cwd=repo, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
        # Commits that keep the tree (the attestation binds the tree, which is what verify
        # checks), each marked so that the notes can name them.
        stream = [b"reset refs/heads/main\nfrom " + root.encode() + b"\n"]
        for i in range(1, commits + 1):
            stream.append(b"commit refs/heads/main\nmark :%d\n" % i)
            stream.append(b"committer Bench <b@example.com> %d +0000\n" % (1700000000 + i))
            msg = b"change %d\n" % i
            stream.append(b"data %d\n" % len(msg) + msg)
        subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, env=env,
                       input=b"".join(stream), check=True)
        shas = subprocess.run(["git", "rev-list", "--reverse", f"{root}..main"], cwd=repo,
                              env=env, capture_output=True, text=True,
                              check=True).stdout.split()
        notes = [b"commit refs/notes/pipeline\ncommitter Bench <b@example.com> 1800000000 +0000\n"
                 b"data 5\nnotes\n"]
        for i, sha in enumerate(shas):
            if fmt == 1:
                note = {"version": 1, "run_id": "20250101-000000-000a", "commit": sha,
                        "tree": tree, "base": root, "approved": True,
                        "verifier": "verifier (bench)", "rounds": 1, "gates": [],
                        "at": "2025-01-01T00:00:00Z"}
            else:
                # Format 2: an in-toto statement of the change from the parent's tree.
                note = {"_type": "https://in-toto.io/Statement/v1",
                        "subject": [{"name": "commit", "digest": {"gitCommit": sha}},
                                    {"name": "tree", "digest": {"gitTree": tree}}],
                        "predicateType": "https://git-pipeline.dev/attestation/v2",
                        "predicate": {"run_id": "20250101-000000-000a", "approved": True,
                                      "base": {"commit": shas[i - 1] if i else root,
                                               "tree": tree},
                                      "task": {"sha256": "0" * 64}, "agents": [], "gates": [],
                                      "verifier": {"agent": "verifier (bench)",
                                                   "verdict": "approved", "rounds": 1},
                                      "scope": {"allow": None, "deny": [], "changed": []},
                                      "usage": {"tokens": 0, "tokens_estimated": False},
                                      "at": "2025-01-01T00:00:00Z"}}
            note = json.dumps(note).encode() + b"\n"
            notes.append(b"N inline " + sha.encode() + b"\ndata %d\n" % len(note) + note)
        subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, env=env,
                       input=b"".join(notes), check=True)
        out = subprocess.run([binary, "verify", f"{root}..main"], cwd=repo, env=env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"verify failed: {out.stdout} {out.stderr}")
        ours = median_time(lambda: run([binary, "verify", f"{root}..main"], repo, env))
        bare = median_time(lambda: run(["git", "log", "--notes=pipeline", "--format=%H %T %N",
                                        f"{root}..main"], repo, env))
        print(f"verify, {len(shas)} commits, format {fmt} notes: {ours * 1000:.1f} ms "
              f"(git log --notes of the range: {bare * 1000:.1f} ms, ratio {ours / bare:.2f})",
              flush=True)
        if fmt == 2:
            # One commit by hand on top: with no note of its own, verify reads every note once
            # to look for an attestation of the same change.
            with open(os.path.join(repo, "b.txt"), "w") as f:
                f.write("by hand\n")
            run(["git", "add", "b.txt"], repo, env)
            run(["git", "commit", "-q", "-m", "by hand"], repo, env)
            one = median_time(lambda: subprocess.run([binary, "verify", "HEAD^..HEAD"], cwd=repo,
                                                     env=env, capture_output=True))
            print(f"verify, 1 commit without a note among {len(shas)} notes: {one * 1000:.1f} ms",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_clean(binary, orphans, files):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = bench_env(tmp)
        repo = new_repo(tmp, env, files)
        root = repo + ".pipeline"

        def make():
            os.makedirs(root, exist_ok=True)
            ids = [f"20250101-{i // 1000:06d}-{i % 1000:03d}b" for i in range(orphans)]
            for rid in ids:
                run(["git", "worktree", "add", "-q", "--lock", "--reason",
                     f"git-pipeline run {rid} in progress", "-b", f"pipeline/{rid}",
                     os.path.join(root, rid), "HEAD"], repo, env)
            return ids

        make()
        t = time.perf_counter()
        run([binary, "clean"], repo, env)
        ours = time.perf_counter() - t
        left = subprocess.run(["git", "worktree", "list"], cwd=repo, env=env, capture_output=True,
                              text=True).stdout.count("\n")
        ids = make()
        t = time.perf_counter()
        for rid in ids:
            run(["git", "worktree", "remove", "-f", "-f", os.path.join(root, rid)], repo, env)
            run(["git", "branch", "-D", f"pipeline/{rid}"], repo, env)
        bare = time.perf_counter() - t
        print(f"clean, {orphans} orphaned worktrees of {files} files: {ours * 1000:.0f} ms "
              f"(git worktree remove + branch -D each: {bare * 1000:.0f} ms, ratio "
              f"{ours / bare:.2f}; worktrees left: {left - 1})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--orphans", type=int, default=200)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"build first: cargo build --release ({args.bin} missing)")
    bench_status(args.bin, args.runs, args.files)
    bench_verify(args.bin, args.commits, 1)
    bench_verify(args.bin, args.commits, 2)
    bench_clean(args.bin, args.orphans, args.files)


if __name__ == "__main__":
    main()
