//! Access files: which bearer tokens a host accepts, and which functions
//! each one may call.
//!
//! ```toml
//! # access.toml: who may call what. A host reloads it when it changes.
//! [[token]]
//! name = "tour"                            # the principal: [A-Za-z0-9._-], 1–64 chars, unique
//! sha256 = "<64 lowercase hex digits>"     # SHA-256 of the token, never the token itself
//! functions = ["math.*", "greeter.hello"]  # function patterns this token may call
//! ```
//!
//! The file holds the SHA-256 of each token, never the token: whoever reads
//! it (a backup, a configuration repository) learns who may call what, but
//! cannot call. A plain SHA-256, unsalted and fast, is enough because tokens
//! are generated: [`new_token`] (behind `wasmrpc token new`) draws 32 bytes
//! from the operating system's random number generator, and no one can
//! search 2^256 tokens for one with a given digest. A token a person chose (a
//! word, a password) would fall to a dictionary attack on a leaked file:
//! never list the digest of one.
//!
//! An [`Access`] is an immutable snapshot of one file: a host that reloads
//! the file builds a new one and swaps it in whole. A connection keeps the
//! [`Grant`] it authenticated with and asks each new snapshot for its current
//! version with [`Access::regrant`].
//!
//! No error message holds a token or a digest, even one written in the wrong
//! place: errors name the file, the `[[token]]` by its position and name, and
//! the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::pattern::Pattern;

/// What every token [`new_token`] makes starts with, so that a token found
/// in a log or a repository is recognisable as one.
const TOKEN_PREFIX: &str = "wrpc_";

/// Why an access file cannot be used. Each variant names the file, the
/// `[[token]]` (its position, counting from 1, and its name when known) and
/// the key.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of an access file. `at` locates it: `line
    /// 4 ([[token]] 1, `functions`)`.
    #[error("invalid `{path}` at {at}: {message}")]
    Parse {
        path: PathBuf,
        at: String,
        message: String,
    },
    #[error(
        "`{path}`: [[token]] {index}: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, not `{name}`"
    )]
    BadName {
        path: PathBuf,
        index: usize,
        name: String,
    },
    #[error("`{path}`: [[token]] {index} (`{name}`): `name` is taken by [[token]] {first}")]
    DuplicateName {
        path: PathBuf,
        index: usize,
        name: String,
        first: usize,
    },
    #[error(
        "`{path}`: [[token]] {index} (`{name}`): `sha256` must be 64 lowercase hex digits, the SHA-256 of the token"
    )]
    BadDigest {
        path: PathBuf,
        index: usize,
        name: String,
    },
    #[error(
        "`{path}`: [[token]] {index} (`{name}`): `sha256` holds a token instead of its SHA-256; whoever read this file knows that token: replace it with `wasmrpc token new`"
    )]
    TokenInFile {
        path: PathBuf,
        index: usize,
        name: String,
    },
    #[error(
        "`{path}`: [[token]] {index} (`{name}`): `sha256` is the same as [[token]] {first} (`{first_name}`)'s: one token cannot have two names"
    )]
    DuplicateDigest {
        path: PathBuf,
        index: usize,
        name: String,
        first: usize,
        first_name: String,
    },
    #[error(
        "`{path}`: [[token]] {index} (`{name}`): `functions` has `{pattern}`, which is not a function pattern: write `*`, a function name, or a prefix ending in `*`"
    )]
    BadPattern {
        path: PathBuf,
        index: usize,
        name: String,
        pattern: String,
    },
}

/// The tokens of one access file: an immutable snapshot. The default has no
/// tokens, and so lets no one in.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// In file order; no two share a name or a digest.
    tokens: Vec<Arc<Grant>>,
}

/// What one token may do: the `[[token]]` entry it matched.
#[derive(Clone)]
pub struct Grant {
    name: String,
    patterns: Vec<Pattern>,
    digest: [u8; 32],
}

/// The file, as TOML gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "token", default)]
    tokens: Vec<Entry>,
}

/// One `[[token]]`, before its values are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// `name = "tour"`: the principal, as hosts log it and pass it on with
    /// each call.
    name: String,
    /// `sha256 = "…"`: the SHA-256 of the token, in 64 lowercase hex digits.
    sha256: String,
    /// `functions = ["math.*", "greeter.hello"]`: the function patterns the
    /// token may call. An empty list lets the token connect and call nothing.
    functions: Vec<String>,
}

impl Access {
    /// Reads and checks the access file at `path`. Errors name `path` as
    /// given.
    ///
    /// # Errors
    ///
    /// [`AccessError::Read`], or any error of [`Access::parse`].
    pub fn from_file(path: &Path) -> Result<Access, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        Access::parse(&text, path)
    }

    /// Parses and checks the text of an access file; errors call it
    /// `access.toml`.
    ///
    /// # Errors
    ///
    /// As [`Access::parse`].
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<Access, AccessError> {
        Access::parse(text, Path::new("access.toml"))
    }

    /// Parses and checks `text`, the content of the file at `path` (only
    /// named in errors).
    ///
    /// # Errors
    ///
    /// The first problem, in file order: [`AccessError::Parse`] (with toml's
    /// message, its line, the `[[token]]` and the key), then for each
    /// `[[token]]` [`AccessError::BadName`], [`AccessError::DuplicateName`],
    /// [`AccessError::TokenInFile`], [`AccessError::BadDigest`],
    /// [`AccessError::DuplicateDigest`] and [`AccessError::BadPattern`].
    pub fn parse(text: &str, path: &Path) -> Result<Access, AccessError> {
        let file: File = toml::from_str(text).map_err(|error| parse_error(text, path, &error))?;
        let mut tokens: Vec<Arc<Grant>> = Vec::with_capacity(file.tokens.len());
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let index = i + 1;
            let path = path.to_owned();
            if !is_name(&entry.name) {
                let name = redact(&entry.name);
                return Err(AccessError::BadName { path, index, name });
            }
            let name = entry.name;
            if let Some(first) = tokens.iter().position(|t| t.name == name) {
                let first = first + 1;
                return Err(AccessError::DuplicateName {
                    path,
                    index,
                    name,
                    first,
                });
            }
            if entry.sha256.starts_with(TOKEN_PREFIX) {
                return Err(AccessError::TokenInFile { path, index, name });
            }
            let Some(digest) = parse_hex(&entry.sha256) else {
                return Err(AccessError::BadDigest { path, index, name });
            };
            if let Some(first) = tokens.iter().position(|t| t.digest == digest) {
                return Err(AccessError::DuplicateDigest {
                    path,
                    index,
                    name,
                    first: first + 1,
                    first_name: tokens[first].name.clone(),
                });
            }
            let mut patterns = Vec::with_capacity(entry.functions.len());
            for text in &entry.functions {
                let Ok(pattern) = Pattern::parse(text) else {
                    let pattern = redact(text);
                    return Err(AccessError::BadPattern {
                        path,
                        index,
                        name,
                        pattern,
                    });
                };
                patterns.push(pattern);
            }
            tokens.push(Arc::new(Grant {
                name,
                patterns,
                digest,
            }));
        }
        Ok(Access { tokens })
    }

    /// The grant of `token`, comparing its SHA-256 with every entry's in
    /// constant time (no early exit, no data-dependent branch on the digest
    /// bytes). The empty token has no grant, whatever the file lists.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Grant>> {
        if token.is_empty() {
            return None;
        }
        self.find(&digest(token))
    }

    /// The current grant of the token a connection authenticated with earlier
    /// (after a reload: its patterns may have changed, or it may be gone).
    /// The token is found by its digest: a token whose entry was renamed
    /// keeps its access under the new name; one whose entry now lists
    /// another digest (a rotated token) is gone.
    pub fn regrant(&self, earlier: &Grant) -> Option<Arc<Grant>> {
        self.find(&earlier.digest)
    }

    /// How many tokens the file lists.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the file lists no token (and so lets no one in).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The entry whose digest is `digest`. Every entry is compared, each in
    /// constant time, and the index of the match is chosen without a branch:
    /// how long this takes tells nothing of which entry, if any, matched, nor
    /// of how many bytes of any digest did.
    fn find(&self, digest: &[u8; 32]) -> Option<Arc<Grant>> {
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, token) in (0u64..).zip(&self.tokens) {
            let same = token.digest[..].ct_eq(&digest[..]);
            index.conditional_assign(&i, same);
            found |= same;
        }
        let index = usize::try_from(index).expect("an index of `tokens`");
        bool::from(found).then(|| Arc::clone(&self.tokens[index]))
    }
}

impl Grant {
    /// The principal: the `name` of the token's entry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the token may call `function` (its full name, `math.add`).
    pub fn allows(&self, function: &str) -> bool {
        crate::pattern::any_matches(&self.patterns, function)
    }

    /// The function patterns the token may call, in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

/// Names and patterns only: a grant's digest stays out of logs.
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<&str> = self.patterns.iter().map(Pattern::as_str).collect();
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("patterns", &patterns)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of `token`, as the access file lists it (in hex).
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: `wrpc_` and 64 hex digits of 32 bytes from the operating
/// system's cryptographically secure random number generator.
///
/// # Panics
///
/// When the operating system has no random number generator to offer,
/// which leaves nothing safe to make a token from.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    format!("{TOKEN_PREFIX}{}", hex(&bytes))
}

/// The `[[token]]` entry granting `token`, under `name`, the functions
/// `patterns` match: what `wasmrpc token new` adds to an access file. It
/// holds the token's digest, never the token.
pub fn entry(name: &str, token: &str, patterns: &[Pattern]) -> String {
    let functions: Vec<String> = patterns
        .iter()
        .map(|p| toml::Value::from(p.as_str()).to_string())
        .collect();
    format!(
        "[[token]]\nname = {}\nsha256 = \"{}\"\nfunctions = [{}]\n",
        toml::Value::from(name),
        hex(&digest(token)),
        functions.join(", ")
    )
}

/// Whether `name` can name a token: 1 to 64 characters of A-Z, a-z, 0-9,
/// `.`, `_` and `-`.
pub fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes that `text`, 64 lowercase hex digits, writes.
fn parse_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

/// toml's `error` in words that hold no secret. toml's own rendering quotes
/// the offending line, which may be a `sha256` line or a token pasted in the
/// wrong place; this one names the line, the `[[token]]` it is in and the key
/// instead, and [`redact`]s toml's message.
fn parse_error(text: &str, path: &Path, error: &toml::de::Error) -> AccessError {
    let message = redact(error.message());
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return AccessError::Parse {
            path: path.to_owned(),
            at: "an unknown line".to_owned(),
            message,
        };
    };
    let before = text.get(..start).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let number = before.matches('\n').count() + 1;

    let mut context = Vec::new();
    let entries = text[..line_end]
        .lines()
        .filter(|l| is_token_header(l))
        .count();
    if entries > 0 {
        context.push(format!("[[token]] {entries}"));
    }
    // The key the line sets, unless toml's message names it already.
    if let Some((key, _)) = line.split_once('=') {
        let key = key.trim();
        let bare = key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !key.is_empty() && key.len() <= 64 && bare && !message.contains(&format!("`{key}`")) {
            context.push(format!("`{key}`"));
        }
    }
    let at = if context.is_empty() {
        format!("line {number}")
    } else {
        format!("line {number} ({})", context.join(", "))
    };
    AccessError::Parse {
        path: path.to_owned(),
        at,
        message,
    }
}

/// Whether `line` opens a `[[token]]` table (`[[ token ]]` too).
fn is_token_header(line: &str) -> bool {
    let inner = line.trim().strip_prefix("[[").map(str::trim_start);
    let rest = inner.and_then(|s| s.strip_prefix("token"));
    rest.is_some_and(|s| s.trim_start().starts_with("]]"))
}

/// `text` (a message to show, or a value it quotes) without what may be a
/// secret: the content of a string value serde quotes (`string "…"`, as in
/// `invalid type: string "…", expected a sequence`), and every run of 32 or
/// more hex digits (a digest, or the random part of a token).
fn redact(text: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut unquoted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(QUOTED) {
        unquoted.push_str(&rest[..i + "string".len()]);
        // serde writes the string as Rust's `{:?}` does: `\` escapes.
        let mut chars = rest[i + QUOTED.len()..].char_indices();
        let mut end = rest.len() - i - QUOTED.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[i + QUOTED.len() + end..];
    }
    unquoted.push_str(rest);

    let mut redacted = String::with_capacity(unquoted.len());
    let mut run = String::new();
    for c in unquoted.chars().chain(['\n']) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 32 {
            redacted.push('…');
        } else {
            redacted.push_str(&run);
        }
        run.clear();
        redacted.push(c);
    }
    redacted.pop();
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of `abc` and of the two-block message, from FIPS 180-2's
    /// examples.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const LONG: &str = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const LONG_SHA256: &str = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn file(entries: &[(&str, &str, &str)]) -> String {
        let mut text = String::from("# access.toml\n");
        for (name, sha256, functions) in entries {
            text.push_str(&format!(
                "\n[[token]]\nname = \"{name}\"\nsha256 = \"{sha256}\"\nfunctions = {functions}\n"
            ));
        }
        text
    }

    fn error(text: &str) -> String {
        Access::from_str(text).unwrap_err().to_string()
    }

    fn patterns(grant: &Grant) -> Vec<&str> {
        grant.patterns().iter().map(Pattern::as_str).collect()
    }

    #[test]
    fn digest_is_the_sha256_of_the_token() {
        assert_eq!(hex(&digest("abc")), ABC);
        assert_eq!(hex(&digest(LONG)), LONG_SHA256);
        assert_eq!(hex(&digest("")), EMPTY_SHA256);
        assert_eq!(parse_hex(ABC), Some(digest("abc")));
    }

    #[test]
    fn a_good_file_authenticates_each_token_to_its_name() {
        let access = Access::from_str(&file(&[
            ("tour", ABC, r#"["math.*", "greeter.hello"]"#),
            ("ops-2.eu_west", LONG_SHA256, r#"["*"]"#),
        ]))
        .unwrap();
        assert_eq!(access.len(), 2);
        assert!(!access.is_empty());

        let tour = access.authenticate("abc").unwrap();
        assert_eq!(tour.name(), "tour");
        assert_eq!(patterns(&tour), ["math.*", "greeter.hello"]);
        let ops = access.authenticate(LONG).unwrap();
        assert_eq!(ops.name(), "ops-2.eu_west");
        assert_eq!(patterns(&ops), ["*"]);

        for wrong in ["", "abd", "ABC", "abc ", ABC, "wrpc_abc"] {
            assert!(access.authenticate(wrong).is_none(), "{wrong:?}");
        }
    }

    #[test]
    fn no_file_and_an_empty_file_let_no_one_in() {
        for access in [Access::default(), Access::from_str("# nobody\n").unwrap()] {
            assert_eq!(access.len(), 0);
            assert!(access.is_empty());
            assert!(access.authenticate("abc").is_none());
        }
    }

    #[test]
    fn the_empty_token_has_no_grant_even_when_its_digest_is_listed() {
        let access = Access::from_str(&file(&[("blank", EMPTY_SHA256, r#"["*"]"#)])).unwrap();
        assert!(access.authenticate("").is_none());
    }

    #[test]
    fn a_grant_allows_exactly_what_its_patterns_match() {
        let access = Access::from_str(&file(&[
            ("tour", ABC, r#"["math.*", "greeter.hello"]"#),
            ("idle", LONG_SHA256, "[]"),
        ]))
        .unwrap();
        let tour = access.authenticate("abc").unwrap();
        for allowed in ["math.add", "math.stats.mean", "greeter.hello"] {
            assert!(tour.allows(allowed), "{allowed}");
        }
        for denied in [
            "greeter.hello2",
            "greeter.bye",
            "mathematics.add",
            "math",
            "",
        ] {
            assert!(!tour.allows(denied), "{denied}");
        }
        let idle = access.authenticate(LONG).unwrap();
        assert!(!idle.allows("math.add"));
    }

    #[test]
    fn regrant_follows_the_token_across_reloads() {
        let before = Access::from_str(&file(&[
            ("tour", ABC, r#"["math.*"]"#),
            ("ops", LONG_SHA256, r#"["*"]"#),
        ]))
        .unwrap();
        let tour = before.authenticate("abc").unwrap();
        let ops = before.authenticate(LONG).unwrap();
        assert_eq!(before.regrant(&tour).unwrap().name(), "tour");

        // New patterns for `tour`; `ops` removed.
        let after = Access::from_str(&file(&[("tour", ABC, r#"["greeter.hello"]"#)])).unwrap();
        let now = after.regrant(&tour).unwrap();
        assert_eq!(now.name(), "tour");
        assert_eq!(patterns(&now), ["greeter.hello"]);
        assert!(!now.allows("math.add"));
        assert!(after.regrant(&ops).is_none());

        // Renamed: the same token, under its new name.
        let renamed = Access::from_str(&file(&[("guide", ABC, r#"["math.*"]"#)])).unwrap();
        assert_eq!(renamed.regrant(&tour).unwrap().name(), "guide");

        // Rotated: the name stays, the old token is gone.
        let rotated = Access::from_str(&file(&[("tour", LONG_SHA256, r#"["*"]"#)])).unwrap();
        assert!(rotated.regrant(&tour).is_none());
        assert!(Access::default().regrant(&tour).is_none());
    }

    #[test]
    fn debug_shows_names_and_patterns_but_no_digest() {
        let access =
            Access::from_str(&file(&[("tour", ABC, r#"["math.*", "greeter.hello"]"#)])).unwrap();
        assert_eq!(
            format!("{access:?}"),
            r#"Access { tokens: [Grant { name: "tour", patterns: ["math.*", "greeter.hello"], .. }] }"#
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_as_given() {
        let error = Access::from_file(Path::new("no/such/access.toml")).unwrap_err();
        assert!(
            matches!(&error, AccessError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(error.to_string(), "cannot read `no/such/access.toml`");
    }

    #[test]
    fn a_file_on_disk_is_named_in_its_errors_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callers.toml");
        std::fs::write(&path, file(&[("tour guide", ABC, "[]")])).unwrap();
        let error = Access::from_file(&path).unwrap_err().to_string();
        let expected = format!(
            "`{}`: [[token]] 1: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, not `tour guide`",
            path.display()
        );
        assert_eq!(error, expected);
        std::fs::write(&path, file(&[("tour", ABC, "[]")])).unwrap();
        assert_eq!(Access::from_file(&path).unwrap().len(), 1);
    }

    #[test]
    fn toml_errors_name_the_line_the_token_entry_and_the_key() {
        let ok = ("tour", ABC, r#"["*"]"#);
        let mut unknown = file(&[ok, ok]);
        unknown = unknown
            .replacen("sha256", "sha265", 2)
            .replacen("sha265", "sha256", 1);
        assert_eq!(
            error(&unknown),
            "invalid `access.toml` at line 10 ([[token]] 2): unknown field `sha265`, expected one of `name`, `sha256`, `functions`"
        );
        assert_eq!(
            error("[[token]]\nname = \"tour\"\nsha256 = \"abc\"\n"),
            "invalid `access.toml` at line 1 ([[token]] 1): missing field `functions`"
        );
        assert_eq!(
            error("[[token]]\nname = 7\nsha256 = \"abc\"\nfunctions = []\n"),
            "invalid `access.toml` at line 2 ([[token]] 1, `name`): invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            error(&format!(
                "[[token]]\nname = \"a\"\nsha256 = \"{ABC}\nfunctions = []\n"
            )),
            "invalid `access.toml` at line 3 ([[token]] 1, `sha256`): invalid basic string, expected `\"`"
        );
        assert_eq!(
            error(&format!("[[token]]\nname = \"a\"\nname = \"{ABC}\"\n")),
            "invalid `access.toml` at line 3 ([[token]] 1, `name`): duplicate key"
        );
        assert_eq!(
            error("tokens = []\n"),
            "invalid `access.toml` at line 1: unknown field `tokens`, expected `token`"
        );
    }

    #[test]
    fn toml_errors_never_show_a_token_or_a_digest() {
        let token = format!("wrpc_{ABC}");
        assert_eq!(
            error(&format!("token = \"{token}\"\n")),
            "invalid `access.toml` at line 1 (`token`): invalid type: string, expected a sequence"
        );
        assert_eq!(
            error(&format!(
                "[[token]]\nname = \"a\"\nsha256 = \"{ABC}\"\nfunctions = \"{token}\"\n"
            )),
            "invalid `access.toml` at line 4 ([[token]] 1, `functions`): invalid type: string, expected a sequence"
        );
        assert_eq!(
            error(&format!("[[token]]\nname = \"a\"\n{token}\n")),
            "invalid `access.toml` at line 3 ([[token]] 1): key with no value, expected `=`"
        );
        assert_eq!(
            error(&format!("[[token]]\n{token} = 1\n")),
            "invalid `access.toml` at line 2 ([[token]] 1): unknown field `wrpc_…`, expected one of `name`, `sha256`, `functions`"
        );
        assert_eq!(
            error(&file(&[(&token, ABC, "[]")])),
            "`access.toml`: [[token]] 1: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, not `wrpc_…`"
        );
    }

    #[test]
    fn each_bad_entry_is_refused_with_its_position_name_and_key() {
        let ok = ("tour", ABC, r#"["*"]"#);
        let long = "x".repeat(65);
        for bad in ["", "tour guide", "tour/1", "é", &long] {
            assert_eq!(
                error(&file(&[ok, (bad, LONG_SHA256, "[]")])),
                format!(
                    "`access.toml`: [[token]] 2: `name` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`, not `{bad}`"
                )
            );
        }
        assert!(Access::from_str(&file(&[(&"x".repeat(64), ABC, "[]")])).is_ok());
        assert_eq!(
            error(&file(&[
                ok,
                ("ops", LONG_SHA256, "[]"),
                ("tour", EMPTY_SHA256, "[]")
            ])),
            "`access.toml`: [[token]] 3 (`tour`): `name` is taken by [[token]] 1"
        );
        let upper = ABC.to_uppercase();
        let short = &ABC[..63];
        let long = format!("{ABC}0");
        let not_hex = ABC.replace('b', "g");
        for bad in [upper.as_str(), short, &long, &not_hex, ""] {
            assert_eq!(
                error(&file(&[ok, ("ops", bad, "[]")])),
                "`access.toml`: [[token]] 2 (`ops`): `sha256` must be 64 lowercase hex digits, the SHA-256 of the token"
            );
        }
        assert_eq!(
            error(&file(&[ok, ("ops", &format!("wrpc_{LONG_SHA256}"), "[]")])),
            "`access.toml`: [[token]] 2 (`ops`): `sha256` holds a token instead of its SHA-256; whoever read this file knows that token: replace it with `wasmrpc token new`"
        );
        assert_eq!(
            error(&file(&[ok, ("ops", LONG_SHA256, "[]"), ("ci", ABC, "[]")])),
            "`access.toml`: [[token]] 3 (`ci`): `sha256` is the same as [[token]] 1 (`tour`)'s: one token cannot have two names"
        );
        assert_eq!(
            error(&file(&[ok, ("ops", LONG_SHA256, r#"["math.*", "ma*th"]"#)])),
            "`access.toml`: [[token]] 2 (`ops`): `functions` has `ma*th`, which is not a function pattern: write `*`, a function name, or a prefix ending in `*`"
        );
    }

    #[test]
    fn new_tokens_are_64_random_hex_digits_after_the_prefix() {
        let (a, b) = (new_token(), new_token());
        for token in [&a, &b] {
            let random = token.strip_prefix("wrpc_").unwrap();
            assert_eq!(random.len(), 64, "{token}");
            assert!(parse_hex(random).is_some(), "{token}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn an_entry_grants_its_token_and_holds_only_its_digest() {
        let functions = [
            Pattern::parse("math.*").unwrap(),
            Pattern::parse("greeter.hello").unwrap(),
        ];
        let text = entry("tour", "abc", &functions);
        assert_eq!(
            text,
            format!(
                "[[token]]\nname = \"tour\"\nsha256 = \"{ABC}\"\nfunctions = [\"math.*\", \"greeter.hello\"]\n"
            )
        );
        // Patterns may hold what TOML must escape.
        let odd = [Pattern::parse(r#"a"b\c*"#).unwrap()];
        let token = new_token();
        let access = Access::from_str(&entry("odd", &token, &odd)).unwrap();
        let grant = access.authenticate(&token).unwrap();
        assert_eq!(grant.name(), "odd");
        assert_eq!(patterns(&grant), [r#"a"b\c*"#]);
    }

    #[test]
    fn redact_drops_quoted_strings_and_long_hex_runs() {
        assert_eq!(
            redact(r#"invalid type: string "a\"b", expected a sequence"#),
            "invalid type: string, expected a sequence"
        );
        assert_eq!(
            redact(&format!("`{ABC}` and wrpc_{ABC}1, but not cafe or `é`")),
            "`…` and wrpc_…, but not cafe or `é`"
        );
        let hex31 = &ABC[..31];
        assert_eq!(redact(hex31), hex31);
        assert_eq!(redact(&ABC[..32]), "…");
    }
}
