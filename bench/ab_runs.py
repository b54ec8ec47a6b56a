#!/usr/bin/env python3
"""Two (or more) git-pipeline binaries side by side: the same instant run (the fixture builder
appends a line to one file, the fixture verifier approves, no gates) on one new generated
repository, the binaries taking turns (the order flips every round, so that a host getting
busier or quieter moves both alike), medians of N runs each. For a change's effect on a run's
fixed cost, where `run_overhead.py`'s ratio against the bare git sequence is too noisy.

usage: bench/ab_runs.py FILES BINARY BINARY... (N=40 runs each; TMPDIR picks the disk;
HISTORY=2000 first gives the repository that many finished runs, as copies of one, each
with its branch; GATES=3 adds that many instant gates, each a step with its checks)
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "fixtures", "agents", "fake-agent")


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    files, binaries = sys.argv[1], [os.path.abspath(b) for b in sys.argv[2:]]
    runs = int(os.environ.get("N", "40"))
    tmp = tempfile.mkdtemp(prefix="gp-ab-")
    try:
        home = os.path.join(tmp, "home")
        os.makedirs(os.path.join(home, ".config", "git-pipeline"))
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   GIT_CONFIG_NOSYSTEM="1")
        for k, v in (("user.name", "bench"), ("user.email", "bench@example.com")):
            subprocess.run(["git", "config", "--global", k, v], env=env, check=True)
        repo = os.path.join(tmp, "repo")
        subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), files,
                        repo], env=env, check=True, stdout=subprocess.DEVNULL)
        target = subprocess.run(["git", "ls-files"], cwd=repo, env=env, check=True,
                                capture_output=True, text=True).stdout.split("\n")[0]
        with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
            f.write(f'version = 1\n[agents.builder]\ncommand = ["{AGENT}", '
                    f'"*:append:{target}:edited"]\n[agents.verifier]\n'
                    f'command = ["{AGENT}", "*:approve"]\n')
            # Instant gates: each is a step of its own, with its containment check around it.
            for g in range(int(os.environ.get("GATES", "0"))):
                f.write(f'[[gates]]\nname = "g{g}"\ncommand = ["true"]\n')
        subprocess.run(["git", "add", ".pipeline.toml"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "config"], cwd=repo, env=env, check=True)
        subprocess.run([binaries[0], "trust"], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        history = int(os.environ.get("HISTORY", "0"))
        if history:
            subprocess.run([binaries[0], "-q", "run", "fix the typo"], cwd=repo, env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs_dir = os.path.join(repo, ".git", "pipeline", "runs")
            finished = max(d for d in os.listdir(runs_dir) if not d.startswith("."))
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env, check=True,
                                  capture_output=True, text=True).stdout.strip()
            branches = []
            for i in range(history):
                shutil.copytree(os.path.join(runs_dir, finished),
                                os.path.join(runs_dir, f"20200101-000000-{i:04x}"))
                branches.append(f"create refs/heads/pipeline/20200101-000000-{i:04x} {head}\n")
            # A shipped run leaves its branch for the user to merge: history has them too.
            subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, env=env, check=True,
                           input="".join(branches), text=True)
        times = {b: [] for b in binaries}
        # Two warm-up rounds: the first run makes the slot, the second finds it.
        for i in range(runs + 2):
            for b in binaries if i % 2 == 0 else binaries[::-1]:
                start = time.perf_counter()
                r = subprocess.run([b, "-q", "run", "fix the typo"], cwd=repo, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                took = (time.perf_counter() - start) * 1000
                if r.returncode != 0:
                    sys.exit(f"{b} failed: {r.stderr.decode(errors='replace')[-500:]}")
                if i >= 2:
                    times[b].append(took)
        print(f"{files} files, {runs} runs each, {history} runs of history, "
              f"{os.environ.get('GATES', '0')} gates, TMPDIR={os.environ.get('TMPDIR', '/tmp')}")
        first = statistics.median(times[binaries[0]])
        for b in binaries:
            m = statistics.median(times[b])
            print(f"  {m:8.1f} ms  {m / first:5.2f}  {b}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
