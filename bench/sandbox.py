#!/usr/bin/env python3
"""What the OS sandbox costs: starting one step's program in it, and a whole run.

1. Step start: `git-pipeline __sandbox --write ... -- true` (a policy as large as a run's) against
   `true` started directly, interleaved, whole-process wall time.
2. A whole run with instant fixture agents (the builder edits one file, the verifier approves,
   one gate `true`): `run.sandbox = "auto"` (every agent and gate sandboxed) against
   `run.sandbox = "off"`, interleaved pairs on the same repository.

Medians, and the median of the per-pair ratios.

usage: python3 bench/sandbox.py [--starts 300] [--pairs 15] [--bin PATH]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_overhead import AGENT, ROOT, bench_env, run  # noqa: E402


def timed(cmd, cwd, env):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def paired(a, b, n):
    """Interleave a and b n times (a b, then b a); return both lists of seconds."""
    xs, ys = [], []
    for i in range(n):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


def report(name, base_name, xs, ys):
    ratios = [x / y for x, y in zip(xs, ys)]
    print(f"{name:<28} median {statistics.median(xs) * 1000:8.2f} ms")
    print(f"{base_name:<28} median {statistics.median(ys) * 1000:8.2f} ms")
    print(f"{'ratio (median of pairs)':<28} {statistics.median(ratios):8.2f}x"
          f"   extra {(statistics.median(xs) - statistics.median(ys)) * 1000:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    probe = subprocess.run([args.bin, "__sandbox", "--probe"], capture_output=True, text=True)
    print(f"sandbox here: {probe.stdout.strip()}")
    tmp = tempfile.mkdtemp(prefix="gp-bench-sandbox-")
    try:
        env = bench_env(tmp)
        home = env["HOME"]
        # A policy as large as a run's: worktree, objects, admin folder, ref folders, tmp,
        # nine caches, an agent's state folders.
        writable = [os.path.join(tmp, f"w{i}") for i in range(18)]
        for w in writable:
            os.makedirs(w, exist_ok=True)
        wrapped = [args.bin, "__sandbox"]
        for w in writable:
            wrapped += ["--write", w]
        wrapped += ["--", "/bin/true"]
        xs, ys = paired(lambda: timed(wrapped, tmp, env), lambda: timed(["/bin/true"], tmp, env),
                        args.starts)
        print(f"\n== starting a step's program ({args.starts} pairs)")
        report("__sandbox -- true", "true", xs, ys)

        repo = os.path.join(tmp, "repo")
        subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), "1000",
                        repo], check=True, env=env, stdout=subprocess.DEVNULL)
        target = subprocess.run(["git", "ls-files"], cwd=repo, env=env, capture_output=True,
                                text=True, check=True).stdout.split("\n")[0]

        def config(mode):
            with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
                f.write(f"""version = 1
[run]
sandbox = "{mode}"
[agents.builder]
command = ["{AGENT}", "*:append:{target}:edited"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
[[gates]]
name = "true"
command = ["true"]
""")
            run(["git", "add", ".pipeline.toml"], repo, env)
            out = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", f"sandbox {mode}"], cwd=repo,
                                 env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"git commit: {out.stdout}{out.stderr}")
            run([args.bin, "trust"], repo, env)

        def one_run(mode):
            def go():
                config(mode)
                return timed([args.bin, "run", "fix the typo"], repo, env)
            return go

        xs, ys = paired(one_run("auto"), one_run("off"), args.pairs)
        print(f"\n== a whole run, 3 sandboxed steps, 1,000 files ({args.pairs} pairs)")
        report("run.sandbox = auto", "run.sandbox = off", xs, ys)
        del home
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
