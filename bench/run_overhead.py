#!/usr/bin/env python3
"""Run overhead: `git pipeline run` with instant agents (the builder edits one file, the verifier
approves, no gates) against the bare git sequence the same work needs:
`git worktree add -b`, edit, `git add -A`, `git commit`, `git notes add`, `git worktree remove`.
A fourth side, "bare+agents", is the bare sequence with the same two fixture agent processes in
it (unsandboxed): its ratio shows what git-pipeline adds beyond the agents it must start.
Two sides of ours: with worktree slots (the default: each run resets the slot the last one left,
a diff, not a whole checkout) and without (`run.max_slots = 0`: a new worktree per run).

Pairs are interleaved (A B, then B A) because on this machine's unjournaled ext4, creating files
right after deleting many is slowed by the kernel; both sides then suffer alike. Reports medians
of whole-process wall time and the median of the per-pair ratios, then (a second line) the
medians of CPU time, user + system of every process each side started, which a busy host moves
less than wall time. Then, once per repository:
- the run's worktree (copied out by the builder before it edits) is compared file by file
  (path, mode, symlink target, bytes) with what `git worktree add` makes, in a new slot and in a
  reused one ("identical": new/reused);
- the peak resident memory of the git-pipeline process itself (VmHWM, polled), not of git.

Repositories: `gen:N` (fixtures/gen_repo.py: N files of ~100 bytes, 100 per folder),
`clone:PATH` (a local clone of a repository), `tree:PATH` (a folder of real files committed
as one repository).

usage: python3 bench/run_overhead.py [--repos gen:1000,gen:20000] [--pairs 15] [--bin PATH]
"""
import argparse
import hashlib
import os
import resource
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
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_of_children():
    """User + system time of every finished child process and what each of them waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_env(tmp):
    home = os.path.join(tmp, "home")
    os.makedirs(os.path.join(home, ".config"), exist_ok=True)
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
               GIT_CONFIG_GLOBAL=os.path.join(home, ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
               LC_ALL="C")
    for v in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        env.pop(v, None)
    return env


def make_repo(spec, repo, env):
    """Create the repository `spec` names at `repo`; return a tracked file to edit."""
    kind, _, arg = spec.partition(":")
    if kind == "gen":
        subprocess.run([sys.executable, os.path.join(ROOT, "fixtures", "gen_repo.py"), arg, repo],
                       check=True, env=env)
    elif kind == "clone":
        run(["git", "clone", "-q", "--no-hardlinks", arg, repo], tmpdir_of(repo), env)
        run(["git", "checkout", "-q", "-B", "main"], repo, env)
    elif kind == "tree":
        shutil.copytree(arg, repo, symlinks=True)
        run(["git", "init", "-q", "-b", "main"], repo, env)
        run(["git", "add", "-A", "-f"], repo, env)
        run(["git", "commit", "-q", "-m", "tree"], repo, env)
    else:
        sys.exit(f"unknown repository spec {spec!r}")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=repo, env=env, capture_output=True,
                           check=True).stdout.split(b"\0")
    # An ordinary text file to append to.
    for f in files:
        p = os.path.join(repo, f.decode())
        if f and os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) < 65536:
            return f.decode()
    sys.exit(f"{spec}: no small regular file to edit")


def tmpdir_of(path):
    return os.path.dirname(path)


def file_map(top):
    """path -> (mode, symlink target or sha256 of the bytes), without .git."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name == ".git":
                continue  # a worktree's pointer to its git dir: different by design
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            else:
                with open(p, "rb") as f:
                    out[rel] = (oct(st.st_mode & 0o777), hashlib.sha256(f.read()).hexdigest())
    return out


def peak_rss_kib(cmd, cwd, env):
    """Run `cmd`, polling its own VmHWM (children excluded); return the last value seen."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    peak = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.002)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed")
    return peak


def bench_repo(spec, pairs, binary):
    tmp = tempfile.mkdtemp(prefix="gp-bench-")
    try:
        env = bench_env(tmp)
        repo = os.path.join(tmp, "repo")
        target = make_repo(spec, repo, env)
        files = len(subprocess.run(["git", "ls-files", "-z"], cwd=repo, env=env,
                                   capture_output=True).stdout.split(b"\0")) - 1
        # The builder copies the worktree out into a folder the sandbox lets it write, named
        # in the personal config as a user names their tools' folders.
        out_dir = os.path.join(tmp, "out")
        os.makedirs(out_dir)
        os.makedirs(os.path.join(env["XDG_CONFIG_HOME"], "git-pipeline"), exist_ok=True)
        with open(os.path.join(env["XDG_CONFIG_HOME"], "git-pipeline", "config.toml"), "w") as f:
            f.write(f'version = 1\n[sandbox]\nwritable = ["{out_dir}"]\n')
        copy = os.path.join(out_dir, "copied")
        config = f"""version = 1
[agents.builder]
command = ["{AGENT}", "1:copyout:{copy}", "*:append:{target}:edited"]
[agents.verifier]
command = ["{AGENT}", "*:approve"]
"""
        with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
            f.write(config)
        run(["git", "add", ".pipeline.toml"], repo, env)
        run(["git", "commit", "-q", "-m", "config"], repo, env)
        run([binary, "trust"], repo, env)

        # The run's checkout against git's own: in a new worktree slot (the first run), then in
        # the slot the first run left, reset (the second). The builder copies it out first.
        reference = os.path.join(tmp, "reference")
        run(["git", "worktree", "add", "-q", "--detach", reference, "HEAD~1"], repo, env)
        theirs = file_map(reference)
        theirs.pop(".pipeline.toml", None)
        identical = []
        for _ in ("new", "reused"):
            run([binary, "-q", "run", "fix the typo"], repo, env)
            ours = file_map(copy)
            ours.pop(".pipeline.toml", None)
            identical.append(ours == theirs)
            if ours != theirs:
                diff = sorted(set(ours.items()) ^ set(theirs.items()))[:5]
                print(f"  differences: {diff}")
            shutil.rmtree(copy, ignore_errors=True)
        run(["git", "worktree", "remove", "--force", reference], repo, env)
        with open(os.path.join(repo, ".pipeline.toml"), "w") as f:
            f.write(config.replace(f'"1:copyout:{copy}", ', ""))
        run(["git", "commit", "-q", "-am", "config without copy"], repo, env)
        # The same, without slots (a new worktree for every run), on a branch of its own:
        # `--base noslots` reads the config there.
        run(["git", "branch", "-q", "noslots"], repo, env)
        run(["git", "worktree", "add", "-q", os.path.join(tmp, "cfg"), "noslots"], repo, env)
        with open(os.path.join(tmp, "cfg", ".pipeline.toml"), "a") as f:
            f.write("[run]\nmax_slots = 0\n")
        run(["git", "commit", "-q", "-am", "no slots"], os.path.join(tmp, "cfg"), env)
        run(["git", "worktree", "remove", "--force", os.path.join(tmp, "cfg")], repo, env)
        run([binary, "trust"], repo, env)
        run([binary, "trust", "--base", "noslots"], repo, env)

        wt = os.path.join(tmp, "bare-wt")
        counter = [0]

        def pipeline():
            run([binary, "-q", "run", "fix the typo"], repo, env)

        def fresh():
            run([binary, "-q", "run", "--base", "noslots", "fix the typo"], repo, env)

        def bare():
            counter[0] += 1
            run(["git", "worktree", "add", "-q", "-b", f"bench/{counter[0]}", wt, "HEAD"], repo,
                env)
            with open(os.path.join(wt, target), "a") as f:
                f.write("edited\n")
            run(["git", "add", "-A"], wt, env)
            run(["git", "commit", "-q", "-m", "fix the typo"], wt, env)
            run(["git", "notes", "--ref=bench", "add", "-f", "-m", "{}", "HEAD"], wt, env)
            run(["git", "worktree", "remove", "--force", wt], repo, env)

        def bare_agents():
            # The same sequence with the run's two agent processes in it (the fixture builder
            # making the edit, the verifier answering), unsandboxed: what a person doing the
            # run's work by hand with the same agents would start.
            counter[0] += 1
            run(["git", "worktree", "add", "-q", "-b", f"bench/{counter[0]}", wt, "HEAD"], repo,
                env)
            run([AGENT, f"*:append:{target}:edited"], wt, env)
            run(["git", "add", "-A"], wt, env)
            run([AGENT, "*:approve"], wt, env)
            run(["git", "commit", "-q", "-m", "fix the typo"], wt, env)
            run(["git", "notes", "--ref=bench", "add", "-f", "-m", "{}", "HEAD"], wt, env)
            run(["git", "worktree", "remove", "--force", wt], repo, env)

        pipeline(), fresh(), bare(), bare_agents()  # warm caches once
        a, c, b, g = [], [], [], []
        cpu = {id(a): [], id(c): [], id(b): [], id(g): []}
        sides = [(pipeline, a), (fresh, c), (bare, b), (bare_agents, g)]
        for i in range(pairs):
            for fn, out in (sides if i % 2 == 0 else sides[::-1]):
                before = cpu_of_children()
                out.append(timed(fn))
                cpu[id(out)].append(cpu_of_children() - before)
        rss = peak_rss_kib([binary, "-q", "run", "fix the typo"], repo, env)
        ratios = [x / y for x, y in zip(a, b)]
        fresh_ratios = [x / y for x, y in zip(c, b)]
        agent_ratios = [x / y for x, y in zip(a, g)]
        print(f"{spec:<28} {files:>7} {statistics.median(a) * 1000:>10.1f} "
              f"{statistics.median(c) * 1000:>10.1f} {statistics.median(b) * 1000:>10.1f} "
              f"{statistics.median(g) * 1000:>10.1f} "
              f"{statistics.median(ratios):>6.2f} {statistics.median(fresh_ratios):>6.2f} "
              f"{statistics.median(agent_ratios):>7.2f} "
              f"{rss / 1024:>8.1f} {'/'.join('yes' if x else 'NO' for x in identical):>10}",
              flush=True)
        # CPU time moves less with a busy host than wall time does: the same sides, as the sum
        # of user and system time of every process each started (detached ones excepted).
        med = {k: statistics.median(v) * 1000 for k, v in cpu.items()}
        print(f"{'  cpu ms (user+sys)':<28} {'':>7} {med[id(a)]:>10.1f} {med[id(c)]:>10.1f} "
              f"{med[id(b)]:>10.1f} {med[id(g)]:>10.1f} {med[id(a)] / med[id(b)]:>6.2f} "
              f"{med[id(c)] / med[id(b)]:>6.2f} {med[id(a)] / med[id(g)]:>7.2f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", default="gen:1000,gen:20000")
    ap.add_argument("--files", help="shorthand for --repos gen:N,gen:M")
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "git-pipeline"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"build first: cargo build --release ({args.bin} missing)")
    repos = args.repos.split(",")
    if args.files:
        repos = [f"gen:{n}" for n in args.files.split(",")]
    fs = subprocess.run(["findmnt", "-no", "FSTYPE,OPTIONS", "-T", tempfile.gettempdir()],
                        capture_output=True, text=True).stdout.strip()
    print(f"filesystem of {tempfile.gettempdir()}: {fs or 'unknown'}")
    print(f"{'repository':<28} {'files':>7} {'slot ms':>10} {'new ms':>10} {'bare ms':>10} "
          f"{'+agents':>10} {'slot':>6} {'new':>6} {'slot/+a':>7} {'peak MiB':>8} "
          f"{'identical':>10}")
    for spec in repos:
        bench_repo(spec, args.pairs, args.bin)


if __name__ == "__main__":
    main()
