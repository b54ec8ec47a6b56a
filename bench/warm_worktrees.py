#!/usr/bin/env python3
"""Warm worktrees: how long a run's first gate takes, against the same gate in the user's own
built checkout after the same edit.

Two projects:
- cargo: ripgrep at tag 14.1.1 (a clone of the public repository; --ripgrep names a local clone
  or mirror to clone from), gate `cargo test --no-run`, a builder that appends one comment line
  to crates/matcher/src/lib.rs;
- npm: a package with a real dependency tree from the registry (mocha and chai, some dozens of
  packages, lockfile committed), gate `npm test`, a setup step `npm ci` written by
  `git pipeline init` (nobody lists node_modules anywhere).

For each: the user's checkout is built once (cold, reported), then the gate is timed there after
the same edit (incremental, the median of --reps). Then runs: the first in the repository (a new
worktree slot: cold) and --reps more (the slot reused: warm), each gate's duration read from the
run's record. Ratios are against the user's incremental gate.

usage: python3 bench/warm_worktrees.py [--ripgrep URL_OR_PATH] [--only cargo|npm] [--reps 3]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_overhead  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AGENT = os.path.join(ROOT, "fixtures", "agents", "fake-agent")


def sh(cmd, cwd, env, quiet=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.PIPE if quiet else None, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{r.stdout}\n{r.stderr}")
    return r.stdout if quiet else ""


def timed(cmd, cwd, env):
    t = time.perf_counter()
    sh(cmd, cwd, env)
    return time.perf_counter() - t


def bench_env(tmp):
    """run_overhead's environment (a home of its own: git identity, git-pipeline's personal
    config), with the user's toolchains."""
    env = run_overhead.bench_env(tmp)
    home = env["HOME"]
    real_home = os.path.expanduser("~")
    # The toolchains and their download caches stay the user's: what is measured is the
    # project's build, not fetching crates or packages.
    env.update(CARGO_HOME=os.environ.get("CARGO_HOME", os.path.join(real_home, ".cargo")),
               RUSTUP_HOME=os.environ.get("RUSTUP_HOME", os.path.join(real_home, ".rustup")),
               npm_config_cache=os.path.join(real_home, ".npm"))
    env.pop("CARGO_TARGET_DIR", None)
    # The sandbox must let the gate use those caches: they are the person's, named in their
    # personal config as a user would.
    os.makedirs(os.path.join(home, ".config", "git-pipeline"), exist_ok=True)
    with open(os.path.join(home, ".config", "git-pipeline", "config.toml"), "w") as f:
        writable = [env["CARGO_HOME"], env["npm_config_cache"]]
        f.write("version = 1\n[sandbox]\nwritable = [%s]\n" % ", ".join(json.dumps(w) for w in writable))
    return env


def pipeline_runs(binary, repo, env, reps):
    """The gate's seconds in the first run and in `reps` more (slot reused), and setup steps'."""
    gates, setups = [], []
    for i in range(reps + 1):
        out = sh([binary, "run", "--json", f"edit {i}"], repo, env)
        rec = json.loads(out)
        if rec.get("status") != "succeeded":
            sys.exit(f"run {i} did not ship: {rec.get('error')}")
        gates.append(rec["gates"][0]["duration_s"])
        log = os.path.join(repo, ".git", "pipeline", "runs", rec["run_id"], "events.jsonl")
        with open(log) as f:
            events = [json.loads(line) for line in f if line.strip()]
        setup = sum(e["data"].get("duration_s", 0) for e in events
                    if e.get("event") == "setup_finished")
        setups.append(setup)
    return gates, setups


def report(name, cold, user, gates, setups):
    first, warm = gates[0], statistics.median(gates[1:])
    print(f"\n{name}")
    print(f"  user's checkout, cold build            {cold:8.1f} s")
    print(f"  user's checkout, incremental (median)  {user:8.1f} s   1.00x")
    print(f"  first run, first gate (new slot)       {first:8.1f} s  {first / user:5.2f}x"
          + (f"   (+ setup {setups[0]:.1f} s)" if setups[0] else ""))
    print(f"  later runs, first gate (slot reused)   {warm:8.1f} s  {warm / user:5.2f}x"
          + (f"   (+ setup {statistics.median(setups[1:]):.1f} s)" if any(setups[1:]) else
             "   (setup skipped)" if setups[0] else ""))
    print(f"  later runs' gates: {', '.join(f'{g:.1f}' for g in gates[1:])}", flush=True)


def cargo(args, binary, tmp):
    env = bench_env(tmp)
    repo = os.path.join(tmp, "ripgrep")
    sh(["git", "clone", "-q", "--no-hardlinks", args.ripgrep, repo], tmp, env)
    sh(["git", "checkout", "-q", "-B", "main", "14.1.1"], repo, env)
    target = "crates/matcher/src/lib.rs"
    gate = ["cargo", "test", "--no-run", "--quiet"]
    cold = timed(gate, repo, env)
    user = []
    for i in range(args.reps):
        with open(os.path.join(repo, target), "a") as f:
            f.write(f"// edited {i}\n")
        user.append(timed(gate, repo, env))
        sh(["git", "checkout", "-q", "--", target], repo, env)
    with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
        f.write(f"""version = 1
[agents.builder]
command = ["{AGENT}", "*:append:{target}:// edited by the builder"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
[[gates]]
name = "build"
command = {json.dumps(gate)}
timeout = "30m"
""")
    sh(["git", "add", ".pipeline.toml"], repo, env)
    sh(["git", "commit", "-q", "-m", "pipeline config"], repo, env)
    sh([binary, "trust"], repo, env)
    # The user's checkout, built at the new HEAD (only the config changed), as the reference.
    sh(gate, repo, env)
    gates, setups = pipeline_runs(binary, repo, env, args.reps)
    report("cargo: ripgrep 14.1.1, gate `cargo test --no-run`", cold, statistics.median(user),
           gates, setups)


def npm(args, binary, tmp):
    env = bench_env(tmp)
    repo = os.path.join(tmp, "npm-project")
    os.makedirs(os.path.join(repo, "test"))
    with open(os.path.join(repo, "package.json"), "w") as f:
        json.dump({"name": "bench-npm", "version": "1.0.0", "private": True,
                   "scripts": {"test": "mocha --reporter dot"},
                   "devDependencies": {"mocha": "10.8.2", "chai": "4.5.0"}}, f, indent=2)
    with open(os.path.join(repo, "index.js"), "w") as f:
        f.write("module.exports.add = (a, b) => a + b;\n")
    with open(os.path.join(repo, "test", "add.test.js"), "w") as f:
        f.write("const { expect } = require('chai');\nconst { add } = require('..');\n"
                "describe('add', () => { it('adds', () => expect(add(1, 2)).to.equal(3)); });\n")
    with open(os.path.join(repo, ".gitignore"), "w") as f:
        f.write("node_modules/\n")
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["npm", "install", "--no-audit", "--no-fund", "--quiet"], repo, env)
    packages = len([d for d in os.listdir(os.path.join(repo, "node_modules")) if not d.startswith(".")])
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-q", "-m", "an npm project"], repo, env)
    # The config `init` writes (its setup step installs; caches default to node_modules/), with
    # the fixture agents and only the test gate.
    sh([binary, "init"], repo, env)
    with open(os.path.join(repo, ".pipeline.toml")) as f:
        proposed = f.read()
    setup = proposed[proposed.index("[[setup]]"):]
    setup = setup[:setup.index("\n\n") + 1]
    with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
        f.write(f"""version = 1
[agents.builder]
command = ["{AGENT}", "*:append:index.js:// edited by the builder"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
{setup}
[[gates]]
name = "test"
command = ["npm", "test"]
""")
    sh(["git", "add", ".pipeline.toml"], repo, env)
    sh(["git", "commit", "-q", "-m", "pipeline config"], repo, env)
    sh([binary, "trust"], repo, env)
    cold = timed(["npm", "ci", "--no-audit", "--no-fund", "--quiet"], repo, env)
    user = []
    for i in range(args.reps):
        with open(os.path.join(repo, "index.js"), "a") as f:
            f.write(f"// edited {i}\n")
        user.append(timed(["npm", "test"], repo, env))
        sh(["git", "checkout", "-q", "--", "index.js"], repo, env)
    gates, setups = pipeline_runs(binary, repo, env, args.reps)
    report(f"npm: mocha + chai ({packages} packages in node_modules), gate `npm test`"
           " (cold: `npm ci`)", cold, statistics.median(user), gates, setups)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ripgrep", default="https://github.com/BurntSushi/ripgrep")
    ap.add_argument("--only", choices=["cargo", "npm"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gp-bench-warm-")
    print(f"filesystem of {tmp}: "
          + subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True,
                           text=True).stdout.strip())
    try:
        if args.only in (None, "npm"):
            npm(args, args.bin, tmp)
        if args.only in (None, "cargo"):
            cargo(args, args.bin, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
