//! Object names as types: a commit id (`Oid`) and a tree id (`TreeId`) are both 40 (or, in a
//! SHA-256 repository, 64) hex digits, and a function that wants one must not be handed the other.
//! Handing a commit where a tree was meant is exactly the mistake that lets an attestation vouch
//! for the wrong thing, so the compiler checks it.
//!
//! Both serialize as the plain hex string, so records and notes on disk keep their format; reading
//! one back checks that it is an object name, so a hand-edited record or a forged note cannot smuggle
//! a revision expression (`main~1`, `HEAD^{tree}`) where an id is expected.

use std::ffi::OsStr;
use std::fmt;
use std::ops::Deref;

/// Whether `text` is a full object name: 40 hex digits (SHA-1) or 64 (SHA-256), lower case as git
/// prints them.
pub fn is_object_name(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

macro_rules! object_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// An id git printed. Only the git layer makes ids from its output, so everything else
            /// holds ids git has vouched for or that [`Self::parse`] checked.
            pub(in crate::git) fn from_git(text: impl Into<String>) -> $name {
                $name(text.into())
            }

            /// A full object name typed by a user or read from a file; `None` when `text` is not
            /// 40 or 64 lower-case hex digits.
            pub fn parse(text: &str) -> Option<$name> {
                is_object_name(text).then(|| $name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The first twelve digits, as people read ids in messages.
            pub fn short(&self) -> &str {
                self.0.get(..12).unwrap_or(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> std::result::Result<$name, String> {
                if is_object_name(&text) {
                    Ok($name(text))
                } else {
                    Err(format!(concat!("not a ", $what, " id: {:?}"), text))
                }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<OsStr> for $name {
            fn as_ref(&self) -> &OsStr {
                OsStr::new(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&$name> for $name {
            fn eq(&self, other: &&$name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

object_id!(
    /// A commit's id (or, where git says "object", any object's: a ref's value, a blob).
    Oid,
    "commit"
);
object_id!(
    /// A tree's id: what a commit, a snapshot of a worktree or a merge produces.
    TreeId,
    "tree"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_lower_case_hex_names_parse() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            Oid::parse(sha1).map(|o| o.to_string()),
            Some(sha1.to_owned())
        );
        assert!(TreeId::parse(&"a".repeat(64)).is_some());
        for bad in [
            "",
            "main",
            "HEAD^{tree}",
            &sha1[..39],
            &sha1.to_uppercase(),
            &format!("{sha1}0"),
        ] {
            assert!(Oid::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn records_keep_the_plain_string_and_refuse_revisions() {
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let id: Oid = serde_json::from_str(&format!("\"{sha1}\"")).expect("an id");
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            format!("\"{sha1}\"")
        );
        let err = serde_json::from_str::<TreeId>("\"main~1\"").expect_err("a revision");
        assert!(err.to_string().contains("not a tree id"), "{err}");
    }
}
