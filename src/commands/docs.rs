//! `git pipeline man [DIR]` and `git pipeline completions SHELL`: generated from the one command
//! line definition, so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::emit;
use crate::cli::Cli;
use crate::cli::CompletionsCmd;
use crate::cli::ManCmd;
use crate::cli::Shell;
use crate::error::Error;
use crate::error::Exit;
use crate::error::Result;

/// Render one man page.
fn page(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| Error::io("cannot render the man page", e))?;
    Ok(buf)
}

pub fn man(cmd: ManCmd, out: &mut dyn Write) -> Result<Exit> {
    let root = Cli::command().name("git-pipeline");
    let dir = match (cmd.folder, cmd.install) {
        (Some(dir), _) => dir,
        (None, true) => pages_beside_binary().ok_or_else(|| {
            Error::usage_hint(
                "this git-pipeline is not the one on PATH in a `bin` folder of an install prefix, so there is no `share/man` beside it that man would search",
                "name a folder on your MANPATH: git pipeline man ~/.local/share/man/man1",
            )
        })?,
        (None, false) => {
            // No folder: the main page on stdout (`git pipeline man | man -l -`).
            let bytes = page(root)?;
            return match out.write_all(&bytes) {
                Ok(()) => Ok(Exit::Success),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
                Err(e) => Err(Error::io("cannot write to stdout", e)),
            };
        }
    };
    let written = write_pages(&dir)?;
    emit(
        out,
        &format!(
            "wrote {} man pages in {} ({} ...)\n`git pipeline --help` opens git-pipeline(1) when {} is searched by man (MANPATH, or the share/man beside a bin folder on PATH)\n",
            written.len(),
            dir.display(),
            written[0],
            dir.parent().unwrap_or(&dir).display()
        ),
    )?;
    Ok(Exit::Success)
}

/// Write git-pipeline.1 and a page per subcommand into `dir`.
fn write_pages(dir: &Path) -> Result<Vec<String>> {
    let root = Cli::command().name("git-pipeline");
    std::fs::create_dir_all(dir).map_err(|e| Error::io_path("create", dir, e))?;
    let mut written = vec![write_page(dir, "git-pipeline", root.clone())?];
    for sub in root.get_subcommands() {
        let name = format!("git-pipeline-{}", sub.get_name());
        written.push(write_page(dir, &name, sub.clone().name(name.clone()))?);
    }
    Ok(written)
}

/// Where man finds the pages of the `git-pipeline` that git runs, with MANPATH unset: man-db
/// and macOS man both search `<prefix>/share/man` for each `<prefix>/bin` on PATH
/// (`~/.cargo/bin` gives `~/.cargo/share/man`). `None` when the binary is not in a `bin`
/// folder (a build under `target/`).
pub fn pages_beside_binary() -> Option<std::path::PathBuf> {
    // This very binary, and only when it is the one git finds on PATH (never a `bin/` of the
    // repository you stand in, reached through a relative or project PATH entry).
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let path = std::env::var_os("PATH")?;
    let on_path = std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join("git-pipeline"))
        .find(|p| p.is_file())?
        .canonicalize()
        .ok()?;
    if exe != on_path {
        return None;
    }
    let bin = exe.parent()?;
    let prefix = bin.parent()?;
    // A `bin/` at the top of a repository is a project's folder, not an install prefix.
    if bin.file_name()? != "bin" || prefix.join(".git").exists() {
        return None;
    }
    Some(prefix.join("share").join("man").join("man1"))
}

/// `git pipeline --help` is git's `git help pipeline`, which runs `man git-pipeline` and never
/// starts git-pipeline: `cargo install` cannot install a page, so the first command writes
/// them beside the binary (and again after an upgrade). Best effort and silent: a folder it
/// cannot write is left alone (`git pipeline man DIR` writes them anywhere).
pub fn keep_pages_current() {
    let Some(dir) = pages_beside_binary() else {
        return;
    };
    let stamp = format!("\"git-pipeline {}\"", env!("CARGO_PKG_VERSION"));
    let current = std::fs::read(dir.join("git-pipeline.1")).is_ok_and(|b| {
        let head = &b[..b.len().min(512)];
        String::from_utf8_lossy(head).contains(&stamp)
    });
    if !current {
        let _ = write_pages(&dir);
    }
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<String> {
    let file = format!("{name}.1");
    let path = dir.join(&file);
    // Replaced, not written through: a symlink in its place is replaced, never followed.
    crate::store::atomic::replace(&path, &page(cmd)?)?;
    Ok(file)
}

/// zsh: run ids and refs, for the values clap's script completes with `_default`.
const ZSH_DYNAMIC: &str = r#"#compdef git-pipeline

(( $+functions[_git_pipeline_runs] )) ||
_git_pipeline_runs() {
    local runs="$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)/pipeline/runs"
    local -a ids
    [[ -d $runs ]] && ids=(${(f)"$(command ls -1 $runs 2>/dev/null)"})
    compadd -a ids
}

(( $+functions[_git_pipeline_refs] )) ||
_git_pipeline_refs() {
    local -a refs
    refs=(HEAD ${(f)"$(git for-each-ref --format='%(refname:short)' refs/heads refs/tags refs/remotes 2>/dev/null)"})
    compadd -a refs
}
"#;

/// fish: run ids after the commands that take one, refs after those that take revisions.
const FISH_DYNAMIC: &str = r#"
function __fish_git_pipeline_runs
    set -l dir (git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)/pipeline/runs
    test -d "$dir"; and command ls -1 "$dir"
end
function __fish_git_pipeline_refs
    echo HEAD
    git for-each-ref --format='%(refname:short)' refs/heads refs/tags refs/remotes 2>/dev/null
end
complete -c git-pipeline -n "__fish_git_pipeline_using_subcommand show resume abandon events" -f -a "(__fish_git_pipeline_runs)"
complete -c git-pipeline -n "__fish_git_pipeline_using_subcommand verify reverify" -f -a "(__fish_git_pipeline_refs)"
complete -c git-pipeline -n "__fish_git_pipeline_using_subcommand run plan trust" -l base -x -a "(__fish_git_pipeline_refs)"
"#;

/// For bash, `git pipeline <TAB>` goes through git's own completion, which calls
/// `_git_pipeline`; this bridges it to the function generated for `git-pipeline`.
const BASH_GIT_BRIDGE: &str = r#"
# Run ids for the commands that take one, refs for those that take revisions; the rest from above.
_gitpipeline_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" sub="${COMP_WORDS[1]}"
    if [[ $COMP_CWORD -ge 2 && "${COMP_WORDS[COMP_CWORD-1]}" == --base ]]; then
        COMPREPLY=($(compgen -W "HEAD $(git for-each-ref --format='%(refname:short)' refs/heads refs/tags refs/remotes 2>/dev/null)" -- "$cur"))
        return 0
    fi
    if [[ $COMP_CWORD -ge 2 && "$cur" != -* ]]; then
        case "$sub" in
            show|resume|abandon|events)
                local runs
                runs="$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)/pipeline/runs"
                if [[ -d "$runs" ]]; then
                    COMPREPLY=($(compgen -W "$(command ls -1 "$runs" 2>/dev/null)" -- "$cur"))
                    return 0
                fi
                ;;
            verify|reverify)
                COMPREPLY=($(compgen -W "HEAD $(git for-each-ref --format='%(refname:short)' refs/heads refs/tags refs/remotes 2>/dev/null)" -- "$cur"))
                return 0
                ;;
        esac
    fi
    _gitpipeline "$@"
}
complete -F _gitpipeline_dynamic -o nosort -o bashdefault -o default git-pipeline

# `git pipeline <TAB>`: git's completion calls _git_pipeline; hand the words to git-pipeline's.
_git_pipeline() {
    local -a words=("git-pipeline" "${COMP_WORDS[@]:2}")
    COMP_WORDS=("${words[@]}")
    COMP_CWORD=$((COMP_CWORD - 1))
    _gitpipeline_dynamic git-pipeline "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
}
"#;

pub fn completions(cmd: CompletionsCmd, out: &mut dyn Write) -> Result<Exit> {
    let mut c = Cli::command();
    let mut buf = Vec::new();
    match cmd.shell {
        Shell::Bash => {
            // clap_complete's bash output names its functions inconsistently for a hyphenated
            // binary name (option completion after a subcommand breaks); generate for a plain
            // name and register the function for `git-pipeline`.
            clap_complete::generate(clap_complete::Shell::Bash, &mut c, "gitpipeline", &mut buf);
            let text = String::from_utf8_lossy(&buf)
                .replace("-o default gitpipeline", "-o default git-pipeline");
            buf = text.into_bytes();
            buf.extend_from_slice(BASH_GIT_BRIDGE.as_bytes());
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut c, "git-pipeline", &mut buf);
            // clap completes every value with `_default` (files): run ids and refs come from
            // the repository instead.
            let text = String::from_utf8_lossy(&buf)
                .replace(
                    ":run -- Run id or a unique prefix of one:_default'",
                    ":run -- Run id or a unique prefix of one:_git_pipeline_runs'",
                )
                .replace(":REF:_default'", ":REF:_git_pipeline_refs'")
                .replace(
                    ":rev -- The commit to check (work done by hand, or rebased):_default'",
                    ":rev -- The commit to check (work done by hand, or rebased):_git_pipeline_refs'",
                )
                .replacen("#compdef git-pipeline\n", ZSH_DYNAMIC, 1);
            buf = text.into_bytes();
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut c, "git-pipeline", &mut buf);
            buf.extend_from_slice(FISH_DYNAMIC.as_bytes());
        }
    }
    match out.write_all(&buf) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(Error::io("cannot write to stdout", e)),
    }
}
