//! Signing attestations with the key and program git signs commits with, and checking them as
//! `git verify-commit` does: SSH signatures against `gpg.ssh.allowedSignersFile`, OpenPGP ones
//! against the gpg keyring.
//!
//! SSH signatures use their own namespace, so that a signature made for an attestation can never
//! pass as a commit's (namespace `git`) and the other way round.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::attest::dsse;
use crate::error::{Error, Result};
use crate::git::Git;

pub const SSH_NAMESPACE: &str = "git-pipeline";
/// Signatures of one envelope that are checked (the rest are ignored).
pub const MAX_SIGNATURES: usize = 4;
const SSH_MAGIC: &[u8] = b"SSHSIG";

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ssh,
    OpenPgp,
}

/// [`Signer::from_git`] on a thread: read while the commit it will sign is made.
pub type Ahead = std::thread::JoinHandle<Result<Option<Signer>>>;

/// How this repository's owner signs, read from git's own settings.
#[derive(Debug, Clone)]
pub struct Signer {
    kind: Kind,
    program: String,
    /// The key as `user.signingKey` says it: a key file, a `key::` literal, or an OpenPGP id.
    key: String,
    /// Where relative key paths resolve (where git would run).
    dir: PathBuf,
}

impl Signer {
    /// `Ok(None)` when git's signing is not set up (no `user.signingKey`).
    pub fn from_git(git: &Git) -> Result<Option<Signer>> {
        // One git process for every setting (this runs at each ship).
        let settings: std::collections::HashMap<String, String> =
            crate::git::config::get_regexp(git, r"^(gpg\.|user\.signingkey$)")?
                .into_iter()
                .collect();
        let get = |k: &str| settings.get(k).filter(|v| !v.is_empty()).cloned();
        let format = get("gpg.format").unwrap_or_else(|| "openpgp".into());
        let kind = match format.as_str() {
            "ssh" => Kind::Ssh,
            "openpgp" => Kind::OpenPgp,
            other => {
                return Err(Error::usage_hint(
                    format!("gpg.format = {other} cannot sign attestations (ssh and openpgp can)"),
                    "set [attest] sign = \"off\" in .pipeline.toml, or sign with an SSH or OpenPGP key",
                ));
            }
        };
        let Some(key) = get("user.signingkey") else {
            return Ok(None);
        };
        // An SSH key is a path, and git expands `~/` in it.
        let key = match (&kind, key.strip_prefix("~/")) {
            (Kind::Ssh, Some(rest)) => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(rest).to_string_lossy().into_owned())
                .unwrap_or(key),
            _ => key,
        };
        let program = match kind {
            Kind::Ssh => get("gpg.ssh.program"),
            Kind::OpenPgp => get("gpg.openpgp.program").or_else(|| get("gpg.program")),
        }
        .unwrap_or_else(|| match kind {
            Kind::Ssh => "ssh-keygen".to_owned(),
            Kind::OpenPgp => "gpg".to_owned(),
        });
        Ok(Some(Signer {
            kind,
            program,
            key,
            dir: git.dir().to_path_buf(),
        }))
    }

    /// For people: "SSH key ~/.ssh/id_ed25519".
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Ssh => format!("SSH key {}", self.key),
            Kind::OpenPgp => format!("OpenPGP key {}", self.key),
        }
    }

    /// Sign the DSSE pre-authentication encoding of `payload`.
    pub fn sign(
        &self,
        payload_type: &str,
        payload: &[u8],
    ) -> std::result::Result<dsse::Envelope, String> {
        let signed = dsse::pae(payload_type, payload);
        let signature = match self.kind {
            Kind::Ssh => self.sign_ssh(&signed)?,
            Kind::OpenPgp => self.sign_openpgp(&signed)?,
        };
        Ok(dsse::Envelope::new(payload_type, payload, vec![signature]))
    }

    fn sign_ssh(&self, data: &[u8]) -> std::result::Result<dsse::Signature, String> {
        // A literal public key (git's `key::` form) is written to a file; ssh-keygen then asks
        // the agent for its private half, as git does.
        let literal = self
            .key
            .strip_prefix("key::")
            .or_else(|| self.key.starts_with("ssh-").then_some(self.key.as_str()));
        let _literal_file;
        let key_path: PathBuf = match literal {
            Some(text) => {
                let mut f = tempfile::NamedTempFile::new()
                    .map_err(|e| format!("cannot write the public key to a temporary file: {e}"))?;
                f.write_all(format!("{text}\n").as_bytes())
                    .map_err(|e| format!("cannot write the public key: {e}"))?;
                let p = f.path().to_path_buf();
                _literal_file = f;
                p
            }
            None => self.dir.join(&self.key),
        };
        let out = run(
            Command::new(&self.program)
                .current_dir(&self.dir)
                .args(["-Y", "sign", "-n", SSH_NAMESPACE, "-f"])
                .arg(&key_path),
            data,
        )?;
        if !out.status.success() {
            return Err(format!(
                "{} -Y sign failed: {}",
                self.program,
                last_line(&out.stderr)
            ));
        }
        let blob = dearmor_ssh(&String::from_utf8_lossy(&out.stdout))?;
        Ok(dsse::Signature {
            keyid: String::new(),
            sig: dsse::encode(&blob),
        })
    }

    fn sign_openpgp(&self, data: &[u8]) -> std::result::Result<dsse::Signature, String> {
        let out = run(
            Command::new(&self.program).current_dir(&self.dir).args([
                "--status-fd=2",
                "-bsu",
                &self.key,
            ]),
            data,
        )?;
        let status = String::from_utf8_lossy(&out.stderr);
        let created = status
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] SIG_CREATED "));
        match created {
            Some(line) if out.status.success() && !out.stdout.is_empty() => Ok(dsse::Signature {
                keyid: line
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_owned(),
                sig: dsse::encode(&out.stdout),
            }),
            _ => Err(format!(
                "{} could not sign: {}",
                self.program,
                last_line(&out.stderr)
            )),
        }
    }
}

/// Checks signatures the way `git verify-commit` would in this repository.
pub struct Checker {
    ssh_program: String,
    allowed_signers: Option<PathBuf>,
    /// `gpg.ssh.revocationFile`: keys listed there never verify, as with `git verify-commit`.
    revoked: Option<PathBuf>,
    gpg_program: String,
    dir: PathBuf,
}

impl Checker {
    pub fn from_git(git: &Git) -> Result<Checker> {
        let gpg_program = match crate::git::config::get(git, "gpg.openpgp.program")? {
            Some(p) => p,
            None => crate::git::config::get(git, "gpg.program")?.unwrap_or_else(|| "gpg".into()),
        };
        Ok(Checker {
            ssh_program: crate::git::config::get(git, "gpg.ssh.program")?
                .unwrap_or_else(|| "ssh-keygen".into()),
            allowed_signers: crate::git::config::get_path(git, "gpg.ssh.allowedSignersFile")?
                .map(|p| git.dir().join(p)),
            revoked: crate::git::config::get_path(git, "gpg.ssh.revocationFile")?
                .map(|p| git.dir().join(p)),
            gpg_program,
            dir: git.dir().to_path_buf(),
        })
    }

    /// Who signed the envelope (the first signature that verifies), or why none does.
    pub fn check(&self, envelope: &dsse::Envelope) -> std::result::Result<String, String> {
        if envelope.signatures.is_empty() {
            return Err("the envelope has no signature".to_owned());
        }
        let data = envelope.signed_bytes()?;
        let mut why = String::new();
        // A few signatures are plenty; each costs a process or two, and a note is untrusted.
        for s in envelope.signatures.iter().take(MAX_SIGNATURES) {
            let sig = dsse::decode(&s.sig)?;
            let result = if sig.starts_with(SSH_MAGIC) {
                self.check_ssh(&sig, &data)
            } else {
                self.check_openpgp(&sig, &data)
            };
            match result {
                Ok(signer) => return Ok(signer),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    fn check_ssh(&self, sig: &[u8], data: &[u8]) -> std::result::Result<String, String> {
        let Some(allowed) = &self.allowed_signers else {
            return Err(
                "an SSH signature, and gpg.ssh.allowedSignersFile is not set to check it against"
                    .to_owned(),
            );
        };
        let sig_file = temp_with(armor_ssh(sig).as_bytes())?;
        let found = run(
            Command::new(&self.ssh_program)
                .current_dir(&self.dir)
                .args(["-Y", "find-principals", "-f"])
                .arg(allowed)
                .arg("-s")
                .arg(sig_file.path()),
            b"",
        )?;
        let principals = String::from_utf8_lossy(&found.stdout).into_owned();
        if !found.status.success() || principals.trim().is_empty() {
            return Err(format!(
                "signed by a key that is not in {}",
                allowed.display()
            ));
        }
        let mut why = String::new();
        for principal in principals.lines().filter(|l| !l.is_empty()) {
            let out = run(
                Command::new(&self.ssh_program)
                    .current_dir(&self.dir)
                    .args(["-Y", "verify", "-n", SSH_NAMESPACE, "-f"])
                    .arg(allowed)
                    .args(["-I", principal, "-s"])
                    .arg(sig_file.path())
                    .args(
                        self.revoked
                            .iter()
                            .flat_map(|r| [std::ffi::OsStr::new("-r"), r.as_os_str()]),
                    ),
                data,
            )?;
            if out.status.success() {
                return Ok(principal.to_owned());
            }
            why = last_line(&out.stderr).to_owned();
            if why.is_empty() {
                why = last_line(&out.stdout).to_owned();
            }
        }
        Err(format!("the SSH signature does not verify: {why}"))
    }

    fn check_openpgp(&self, sig: &[u8], data: &[u8]) -> std::result::Result<String, String> {
        let sig_file = temp_with(sig)?;
        let out = run(
            Command::new(&self.gpg_program)
                .current_dir(&self.dir)
                .args(["--status-fd=1", "--verify"])
                .arg(sig_file.path())
                .arg("-"),
            data,
        )?;
        let status = String::from_utf8_lossy(&out.stdout);
        let field = |tag: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(tag))
                .map(str::to_owned)
        };
        let bad = [
            "[GNUPG:] BADSIG ",
            "[GNUPG:] ERRSIG ",
            "[GNUPG:] EXPKEYSIG ",
            "[GNUPG:] REVKEYSIG ",
        ]
        .iter()
        .any(|t| status.contains(t));
        match field("[GNUPG:] GOODSIG ") {
            Some(good) if out.status.success() && !bad && status.contains("[GNUPG:] VALIDSIG ") => {
                // "<long key id> <user id>"
                Ok(good
                    .split_once(' ')
                    .map_or(good.clone(), |(_, uid)| uid.to_owned()))
            }
            _ if status.contains("[GNUPG:] NO_PUBKEY ") => {
                Err("signed by an OpenPGP key that is not in the keyring".to_owned())
            }
            _ => Err(format!(
                "the OpenPGP signature does not verify: {}",
                last_line(&out.stderr)
            )),
        }
    }
}

fn run(cmd: &mut Command, stdin: &[u8]) -> std::result::Result<std::process::Output, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        // A program that exits early closes its input: what it says is in its output.
        let _ = input.write_all(stdin);
    }
    child
        .wait_with_output()
        .map_err(|e| format!("{program} did not finish: {e}"))
}

fn temp_with(bytes: &[u8]) -> std::result::Result<tempfile::NamedTempFile, String> {
    let mut f = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot write a temporary signature file: {e}"))?;
    f.write_all(bytes)
        .map_err(|e| format!("cannot write a temporary signature file: {e}"))?;
    Ok(f)
}

fn last_line(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

const SSH_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const SSH_END: &str = "-----END SSH SIGNATURE-----";

/// The signature blob inside ssh-keygen's armour.
fn dearmor_ssh(text: &str) -> std::result::Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != SSH_BEGIN)
        .skip(1)
        .take_while(|l| l.trim() != SSH_END)
        .map(str::trim)
        .collect();
    let blob = dsse::decode(&body).map_err(|_| "ssh-keygen printed no signature".to_owned())?;
    if blob.starts_with(SSH_MAGIC) {
        Ok(blob)
    } else {
        Err("ssh-keygen printed no signature".to_owned())
    }
}

/// ssh-keygen's armour around a signature blob (lines of 70, as ssh-keygen writes them).
pub fn armor_ssh(blob: &[u8]) -> String {
    let b64 = dsse::encode(blob);
    let mut out = format!("{SSH_BEGIN}\n");
    for chunk in b64.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(SSH_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armour_round_trips() -> std::result::Result<(), String> {
        let blob: Vec<u8> = SSH_MAGIC.iter().copied().chain(0..=255u8).collect();
        let text = armor_ssh(&blob);
        assert!(
            text.lines()
                .all(|l| l.len() <= 70 || l.starts_with("-----"))
        );
        assert_eq!(dearmor_ssh(&text)?, blob);
        assert!(dearmor_ssh("no armour").is_err());
        assert!(dearmor_ssh(&armor_ssh(b"not an ssh sig")).is_err());
        Ok(())
    }
}
