#!/usr/bin/env python3
"""The builtin `duplicates` gate on a real repository (ripgrep 14.1.1 by default): three runs
with fixture builders, and the gate's own time from each run's record.

1. copy: the builder copies an existing function (`interpolate` of
   crates/matcher/src/interpolate.rs) under a new name into a new file; the gate must fail and
   name the original.
2. new: the builder adds new code; the gate must pass.
3. old: the repository gains a duplicated function in a commit before the run (duplication
   that was there already), and the builder adds new code; the gate must pass.

usage: python3 bench/duplicates.py --repo PATH_TO_A_RIPGREP_CLONE [--rev 14.1.1] [--bin PATH]
           [--engine builtin|jscpd]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_overhead import AGENT, ROOT, bench_env, run  # noqa: E402

SOURCE = "crates/matcher/src/interpolate.rs"


def function(text, name):
    """The lines of top-level `pub fn <name>` up to its closing brace."""
    lines = text.split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith(f"pub fn {name}"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end + 1]) + "\n", start + 1, end + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", default="14.1.1")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    ap.add_argument("--engine", default="builtin", choices=["builtin", "jscpd"])
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gp-bench-dup-")
    try:
        env = bench_env(tmp)
        repo = os.path.join(tmp, "rg")
        run(["git", "clone", "-q", "--no-hardlinks", args.repo, repo], tmp, env)
        run(["git", "checkout", "-q", "-B", "main", args.rev], repo, env)
        files = subprocess.run(["git", "ls-files", "*.rs"], cwd=repo, env=env, capture_output=True,
                               text=True, check=True).stdout.split()
        lines = sum(sum(1 for _ in open(os.path.join(repo, f), "rb")) for f in files)
        print(f"repository: {args.rev}, {len(files)} Rust files, {lines} lines; engine {args.engine}")
        with open(os.path.join(repo, SOURCE)) as f:
            body, first, last = function(f.read(), "interpolate")
        copy = body.replace("pub fn interpolate", "pub fn interpolate_again", 1)
        fresh = "pub fn total(xs: &[u64]) -> u64 {\n    xs.iter().copied().sum::<u64>()\n}\n"

        def configure(write):
            with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
                f.write(f"""version = 1
[limits]
max_fix_attempts = 0
[agents.builder]
command = ["{AGENT}", {json.dumps("*:write:crates/matcher/src/again.rs:" + write)}]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
[[gates]]
name = "duplicates"
builtin = "duplicates"
engine = "{args.engine}"
""")
            run(["git", "add", ".pipeline.toml"], repo, env)
            run(["git", "commit", "-q", "--allow-empty", "-m", "bench config"], repo, env)
            run([args.bin, "trust"], repo, env)

        def one(label, write, expect_pass):
            configure(write)
            out = subprocess.run([args.bin, "run", "--json", f"bench {label}"], cwd=repo,
                                 env=env, capture_output=True, text=True)
            rec = json.loads(out.stdout)
            gate = rec["gates"][0]
            log = open(os.path.join(repo, ".git", "pipeline", "runs", rec["run_id"], "outputs",
                                    "gate-1.duplicates.log")).read()
            ok = (gate["status"] == "pass") == expect_pass
            print(f"{label:<5} gate {gate['status']:<4} in {gate['duration_s'] * 1000:7.1f} ms"
                  f"   {'as expected' if ok else 'UNEXPECTED'}")
            print("      " + log.strip().split("\n")[0])
            if not expect_pass:
                print("      " + "\n      ".join(x.strip() for x in log.strip().split("\n")[1:-1]))
                named = f"repeats {SOURCE}:{first}-" in log or f"repeats {SOURCE}:" in log
                print(f"      names the original ({SOURCE}, lines {first}-{last}): {named}")
            return ok

        good = one("copy", copy, False)
        good &= one("new", fresh, True)
        # Duplication from before the run: a copy committed by hand first.
        with open(os.path.join(repo, "crates/matcher/src/old_copy.rs"), "w") as f:
            f.write(body.replace("pub fn interpolate", "pub fn interpolate_old", 1))
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-q", "-m", "a copy made before the run"], repo, env)
        good &= one("old", fresh, True)
        if not good:
            sys.exit("the gate did not do what was expected")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
