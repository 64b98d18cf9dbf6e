//! `wasmrpc token`: makes bearer tokens and adds them to access files.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::auth::access::{self, Access, AccessError};
use crate::pattern::Pattern;

/// What a new access file starts with.
const HEADER: &str = "\
# Access file: who may call what. A host reloads it when it changes.
# Each [[token]] holds the SHA-256 of a token, never the token itself;
# add one with `wasmrpc token new --access FILE`.
";

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for a caller and grant it functions.
    ///
    /// Prints the new token, and nothing else, on stdout, so that
    /// `TOKEN=$(wasmrpc token new --name ci --functions 'math.*' --access
    /// access.toml)` keeps it. The token is `wrpc_` and 64 hex digits of 32
    /// bytes from the operating system's secure random number generator. It
    /// is shown this once and stored nowhere: the access file keeps only its
    /// SHA-256, which protects only a token no one could guess. So make every
    /// token this way, never let a person choose one, and give it to the
    /// caller over a private channel.
    ///
    /// With `--access FILE`, adds the token's `[[token]]` entry to FILE,
    /// creating FILE (readable by its owner only) when it does not exist.
    /// A name FILE already has is refused, and so is anything that would
    /// leave FILE invalid. FILE is replaced in one step (a new file in the
    /// same folder, with the old one's owner and permissions, renamed over
    /// it), so a host watching it reads the old version or the new one,
    /// never half of one. Without `--access`, the entry is printed on stderr,
    /// to paste into an access file.
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The caller's name, by which hosts know it (the principal): 1 to 64
    /// characters of A-Z, a-z, 0-9, `.`, `_` and `-`, unique in the file.
    #[arg(long, value_parser = parse_name)]
    name: String,
    /// A function pattern the token may call: `*` (every function), a
    /// function's full name (`greeter.hello`) or a prefix ending in `*`
    /// (`math.*`). Repeat the flag for more; quote `*` from the shell.
    #[arg(long = "functions", value_name = "PATTERN", required = true, value_parser = Pattern::parse)]
    functions: Vec<Pattern>,
    /// The access file to add the token to; without it, the entry goes to
    /// stderr.
    #[arg(long, value_name = "FILE")]
    access: Option<PathBuf>,
}

fn parse_name(name: &str) -> Result<String, String> {
    if access::is_name(name) {
        Ok(name.to_owned())
    } else {
        Err("a name is 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`".to_owned())
    }
}

/// Runs `wasmrpc token ...`, writing to the process's stdout and stderr.
pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    run_with(args, &mut io::stdout().lock(), &mut io::stderr().lock())
}

fn run_with(args: TokenArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenCommand::New(args) => new(&args, out, err),
    }
}

/// `token new`: the token goes to `out` only once its entry is written (to
/// the file, or without one to `err`), so that a printed token always works.
fn new(args: &NewArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let token = access::new_token();
    let entry = access::entry(&args.name, &token, &args.functions);
    match &args.access {
        Some(path) => {
            append(path, &entry).with_context(|| format!("cannot add token `{}`", args.name))?;
            writeln!(err, "added token `{}` to `{}`", args.name, path.display())?;
        }
        None => {
            Access::parse(&entry, Path::new("the new entry"))?;
            write!(err, "{entry}")?;
        }
    }
    writeln!(out, "{token}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Adds `entry`, a `[[token]]` table, to the access file at `path`, or
/// creates the file (a header, then the entry) when it does not exist.
/// Checks that the result is a valid access file before writing it, then
/// replaces the file in one rename.
///
/// # Errors
///
/// When the file cannot be read or written, when it is invalid already,
/// or when the entry's name is taken there.
pub(super) fn append(path: &Path, entry: &str) -> anyhow::Result<()> {
    // A symbolic link stays one: the file it points to is replaced.
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let mut text = match fs::read_to_string(&target) {
        Ok(text) => {
            Access::parse(&text, path)?;
            text
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => HEADER.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(entry);
    match Access::parse(&text, path) {
        Ok(_) => {}
        Err(AccessError::DuplicateName { name, .. }) => bail!(
            "`{}` already has a token named `{name}`: choose another name, or delete that entry first to replace it",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    }
    replace(&target, text.as_bytes()).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Replaces the file at `target` with `content` in one rename, so that no
/// reader ever sees part of it: a new file (keeping the old one's owner and
/// permissions, or readable by its owner only) in the same folder, synced,
/// renamed over `target`, and the folder synced.
fn replace(target: &Path, content: &[u8]) -> anyhow::Result<()> {
    let folder = match target.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(target.file_name().unwrap_or_default());
    prefix.push(".");
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(folder)
        .context("cannot create a file next to it")?;
    if let Ok(old) = fs::metadata(target) {
        let new = file.as_file().metadata()?;
        if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
            std::os::unix::fs::fchown(file.as_file(), Some(old.uid()), Some(old.gid()))
                .context("cannot give the new file the owner of the old one")?;
        }
        file.as_file().set_permissions(old.permissions())?;
    }
    file.write_all(content)?;
    file.as_file().sync_all()?;
    file.persist(target)?;
    fs::File::open(folder)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::FromArgMatches;

    use super::*;
    use crate::cli::{Cli, Command, command};

    /// SHA-256 of `abc`.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const LONG: &str = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const LONG_SHA256: &str = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts.iter().map(|t| Pattern::parse(t).unwrap()).collect()
    }

    /// The names in `folder`, to see that no temporary file is left.
    fn listing(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn append_creates_the_file_with_a_header_then_adds_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        append(&path, &access::entry("tour", "abc", &patterns(&["math.*"]))).unwrap();
        let first = format!(
            "{HEADER}\n[[token]]\nname = \"tour\"\nsha256 = \"{ABC}\"\nfunctions = [\"math.*\"]\n"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), first);
        assert_eq!(mode(&path), 0o600);

        append(&path, &access::entry("ops", LONG, &patterns(&["*", "a.b"]))).unwrap();
        let second = format!(
            "{first}\n[[token]]\nname = \"ops\"\nsha256 = \"{LONG_SHA256}\"\nfunctions = [\"*\", \"a.b\"]\n"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), second);
        let access = Access::from_file(&path).unwrap();
        assert_eq!(access.authenticate("abc").unwrap().name(), "tour");
        assert_eq!(access.authenticate(LONG).unwrap().name(), "ops");
        assert_eq!(listing(dir.path()), ["access.toml"]);
    }

    #[test]
    fn append_refuses_a_taken_name_and_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        append(&path, &access::entry("tour", "abc", &patterns(&["*"]))).unwrap();
        let before = fs::read(&path).unwrap();
        let error = append(&path, &access::entry("tour", LONG, &patterns(&["*"]))).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "`{}` already has a token named `tour`: choose another name, or delete that entry first to replace it",
                path.display()
            )
        );
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(listing(dir.path()), ["access.toml"]);
    }

    #[test]
    fn append_replaces_the_file_so_a_reader_of_the_old_one_reads_it_whole() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        append(&path, &access::entry("tour", "abc", &patterns(&["*"]))).unwrap();
        let before = fs::read_to_string(&path).unwrap();
        let mut reader = fs::File::open(&path).unwrap();
        append(&path, &access::entry("ops", LONG, &patterns(&["*"]))).unwrap();
        let mut read = String::new();
        reader.read_to_string(&mut read).unwrap();
        assert_eq!(read, before);
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            reader.metadata().unwrap().ino()
        );
        assert_eq!(Access::from_file(&path).unwrap().len(), 2);
    }

    #[test]
    fn append_refuses_to_add_to_an_invalid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        let invalid = "[[token]]\nname = \"tour\"\n";
        fs::write(&path, invalid).unwrap();
        let error = append(&path, &access::entry("ops", "abc", &patterns(&["*"]))).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "invalid `{}` at line 1 ([[token]] 1): missing field `sha256`",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), invalid);

        // The file's own problem, not one the new entry would make.
        let twice = format!("{0}\n{0}", access::entry("tour", "abc", &patterns(&["*"])));
        fs::write(&path, &twice).unwrap();
        let error = append(&path, &access::entry("ops", LONG, &patterns(&["*"]))).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            format!(
                "`{}`: [[token]] 2 (`tour`): `name` is taken by [[token]] 1",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), twice);
    }

    #[test]
    fn append_keeps_the_permissions_of_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        // No newline at the end: the entry still starts on a line of its own.
        fs::write(&path, "# ours").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        append(&path, &access::entry("tour", "abc", &patterns(&["*"]))).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(
                "# ours\n\n[[token]]\nname = \"tour\"\nsha256 = \"{ABC}\"\nfunctions = [\"*\"]\n"
            )
        );
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn append_through_a_symbolic_link_replaces_the_file_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("access.toml");
        fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink("real.toml", &link).unwrap();
        append(&link, &access::entry("tour", "abc", &patterns(&["*"]))).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        let access = Access::from_file(&real).unwrap();
        assert_eq!(access.authenticate("abc").unwrap().name(), "tour");
    }

    /// Parses `args` with the real command line and runs the `token`
    /// command, returning its stdout and stderr.
    fn wasmrpc(args: &[&str]) -> (String, String) {
        let matches = command().try_get_matches_from(args).unwrap();
        let Command::Token(args) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not a token command");
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(args, &mut out, &mut err).unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn token_new_prints_only_a_token_that_the_written_file_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        let file = path.to_str().unwrap();
        let (out, err) = wasmrpc(&[
            "wasmrpc",
            "token",
            "new",
            "--name",
            "tour",
            "--functions",
            "math.*",
            "--functions",
            "greeter.hello",
            "--access",
            file,
        ]);
        let token = out.strip_suffix('\n').unwrap();
        assert_eq!(token.len(), "wrpc_".len() + 64, "{out:?}");
        assert!(token.starts_with("wrpc_"), "{out:?}");
        assert_eq!(err, format!("added token `tour` to `{file}`\n"));
        assert!(!fs::read_to_string(&path).unwrap().contains(token));

        let grant = Access::from_file(&path)
            .unwrap()
            .authenticate(token)
            .unwrap();
        assert_eq!(grant.name(), "tour");
        let patterns: Vec<&str> = grant.patterns().iter().map(Pattern::as_str).collect();
        assert_eq!(patterns, ["math.*", "greeter.hello"]);
        assert!(grant.allows("math.add"));
        assert!(!grant.allows("greeter.bye"));
    }

    #[test]
    fn token_new_without_a_file_prints_the_entry_on_stderr() {
        let (out, err) = wasmrpc(&[
            "wasmrpc",
            "token",
            "new",
            "--name",
            "ci",
            "--functions",
            "*",
        ]);
        let token = out.strip_suffix('\n').unwrap();
        assert_eq!(
            err,
            format!(
                "[[token]]\nname = \"ci\"\nsha256 = \"{}\"\nfunctions = [\"*\"]\n",
                access::digest(token)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        );
        let grant = Access::from_str(&err).unwrap().authenticate(token).unwrap();
        assert_eq!(grant.name(), "ci");
    }

    #[test]
    fn token_new_refuses_bad_names_and_patterns_before_making_a_token() {
        for (args, message) in [
            (
                ["--name", "tour guide", "--functions", "*"],
                "invalid value 'tour guide' for '--name <NAME>': a name is 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
            ),
            (
                ["--name", "tour", "--functions", "ma*th"],
                "invalid value 'ma*th' for '--functions <PATTERN>': `ma*th` is not a function pattern: write `*`, a function name, or a prefix ending in `*`",
            ),
        ] {
            let error = command()
                .try_get_matches_from(["wasmrpc", "token", "new"].iter().chain(&args))
                .unwrap_err();
            let shown = error.to_string();
            assert_eq!(shown.lines().next().unwrap(), format!("error: {message}"));
        }
    }
}
