//! Project chores, run as `cargo xtask <command>`:
//!
//! - `plugins [--out DIR]`: build the example plugins for `wasm32-wasip2`
//!   (adding the target when missing) and install them into each region's
//!   plugin folder under DIR (default: the repository root), next to a copy
//!   of `regions.toml` when DIR is elsewhere.
//! - `demo`: `plugins`, build the host, and become `wasmrpc up` on the
//!   sample `regions.toml`: every host of every region starts, each prints
//!   where it listens, and Ctrl-C stops them all.
//! - `corpus [--out DIR] [--seed-fuzz]`: regenerate the malformed-frame corpus
//!   in DIR (default `tests/corpus/`; see its README.md). With `--seed-fuzz`,
//!   also write seeds for the fuzz targets into `fuzz/corpus/<target>/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Which example plugins each sample region serves.
const PLACEMENT: &[(&str, &[&str])] = &[
    ("eu-west", &["math", "greeter", "misbehave"]),
    ("us-east", &["orders", "math", "ledger"]),
    ("ap-south", &["inventory"]),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => {
            let out = match args.get(1).map(String::as_str) {
                Some("--out") => args.get(2).map(PathBuf::from),
                _ => None,
            };
            plugins(out.as_deref()).map(|_| ())
        }
        Some("demo") => demo(),
        Some("corpus") => corpus_command(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask plugins [--out DIR] | cargo xtask demo | \
                 cargo xtask corpus [--out DIR] [--seed-fuzz]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned()
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("wasm32-wasip2") {
        eprintln!("adding the wasm32-wasip2 target");
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

/// Builds the guests and installs them per [`PLACEMENT`]; returns the folder
/// holding `regions.toml` and the plugin folders.
fn plugins(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    ensure_wasm_target()?;
    let root = root();
    let guests = root.join("guest-examples");
    run(cargo()
        .current_dir(&guests)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(guests.join("target"))
        // The host's flags are not the guests' (`-C target-cpu=native` means
        // nothing to wasm32), and the test harness builds the guests without
        // them too (`wasmrpc_tests::guests_dir`): with the same flags, one
        // build is fresh for the other instead of redoing it.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS"))?;
    let built = guests.join("target/wasm32-wasip2/release");
    let out = out.map_or_else(|| root.clone(), Path::to_path_buf);
    if out != root {
        std::fs::create_dir_all(&out)?;
        std::fs::copy(root.join("regions.toml"), out.join("regions.toml"))?;
    }
    for (region, names) in PLACEMENT {
        let folder = out.join("plugins").join(region);
        std::fs::create_dir_all(&folder)?;
        for name in *names {
            let file = format!("{name}.wasm");
            std::fs::copy(built.join(&file), folder.join(&file))
                .with_context(|| format!("cannot install `{file}` into `{}`", folder.display()))?;
            let sidecar = guests.join(name).join(format!("{name}.toml"));
            if sidecar.is_file() {
                std::fs::copy(&sidecar, folder.join(format!("{name}.toml")))?;
            }
        }
        eprintln!(
            "installed {} plugins into {}",
            names.len(),
            folder.display()
        );
    }
    Ok(out)
}

/// `cargo xtask demo`: installs the example plugins, builds the host, then
/// becomes `wasmrpc up` on the sample `regions.toml`.
///
/// On Unix this process is replaced by `wasmrpc up` (as `cargo run` is
/// replaced by this one), so the process the user started is the one that
/// serves: Ctrl-C reaches it directly and stops every host, and nothing is
/// left behind to orphan them.
fn demo() -> anyhow::Result<()> {
    let root = plugins(None)?;
    run(cargo()
        .current_dir(&root)
        .args(["build", "--package", "wasmrpc", "--bin", "wasmrpc"]))?;
    // Cargo builds `wasmrpc` next to this binary: same workspace, same profile.
    let exe = std::env::current_exe().context("cannot find the xtask executable")?;
    let wasmrpc = exe.with_file_name(format!("wasmrpc{}", std::env::consts::EXE_SUFFIX));
    let mut up = Command::new(&wasmrpc);
    up.current_dir(&root)
        .args(["up", "--config"])
        .arg(root.join("regions.toml"));
    eprintln!(
        "starting every host of `regions.toml` with `{} up`",
        wasmrpc.display()
    );
    exec(&mut up)
}

/// Replaces this process with `command`, which inherits its pid, process
/// group and terminal.
#[cfg(unix)]
fn exec(command: &mut Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    Err(error).with_context(|| format!("cannot run {command:?}"))
}

/// Runs `command` to its end (no `exec` here).
#[cfg(not(unix))]
fn exec(command: &mut Command) -> anyhow::Result<()> {
    run(command)
}

/// `cargo xtask corpus [--out DIR] [--seed-fuzz]`.
fn corpus_command(args: &[String]) -> anyhow::Result<()> {
    let mut out = root().join("tests/corpus");
    let mut seed_fuzz = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out needs a folder")?),
            "--seed-fuzz" => seed_fuzz = true,
            other => bail!("unknown argument `{other}` to `corpus`"),
        }
    }
    let corpus = corpus::generate();
    std::fs::create_dir_all(&out)?;
    // Remove files of earlier runs so that the folder is exactly the corpus.
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "bin") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut total_bytes = 0;
    for file in &corpus {
        std::fs::write(out.join(&file.name), &file.bytes)
            .with_context(|| format!("cannot write `{}`", file.name))?;
        *counts.entry(file.category).or_default() += 1;
        total_bytes += file.bytes.len();
    }
    for (category, count) in &counts {
        println!("{count:5}  {category}");
    }
    println!(
        "{:5}  files ({total_bytes} bytes) in {}",
        corpus.len(),
        out.display()
    );
    if seed_fuzz {
        seed_fuzz_corpora(&corpus)?;
    }
    Ok(())
}

/// Seeds `fuzz/corpus/<target>/` from the corpus: every frame body for
/// `envelope` and `cbor_to_val`, plus CBOR values for each WIT type family
/// for `cbor_to_val`. (`frame_decoder` reads `tests/corpus/` directly.)
fn seed_fuzz_corpora(corpus: &[corpus::File]) -> anyhow::Result<()> {
    let fuzz = root().join("fuzz/corpus");
    let envelope = fuzz.join("envelope");
    let values = fuzz.join("cbor_to_val");
    let frames = fuzz.join("frame_decoder");
    for dir in [&envelope, &values, &frames] {
        std::fs::create_dir_all(dir)?;
    }
    let mut bodies = std::collections::BTreeSet::new();
    for file in corpus {
        bodies.extend(corpus::complete_bodies(&file.bytes));
    }
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(envelope.join(format!("body-{i:04}")), body)?;
        std::fs::write(values.join(format!("body-{i:04}")), body)?;
    }
    let value_seeds = corpus::value_seeds();
    for (name, bytes) in &value_seeds {
        std::fs::write(values.join(format!("value-{name}")), bytes)?;
    }
    println!(
        "seeded fuzz/corpus/envelope ({} bodies) and fuzz/corpus/cbor_to_val ({} bodies, {} values); \
         fuzz/corpus/frame_decoder is created empty (pass tests/corpus as a second corpus folder)",
        bodies.len(),
        bodies.len(),
        value_seeds.len()
    );
    Ok(())
}

/// The malformed-frame corpus: raw bytes a client sends to a host, written by
/// hand as CBOR so that every byte is deliberate.
///
/// Unless a file's name starts with `prehello-`, its bytes are sent after a
/// valid `hello` exchange. Files whose name (after `prehello-`) starts with
/// `split-1byte-` are sent one byte per write.
mod corpus {
    use std::collections::BTreeSet;

    /// One corpus file.
    pub struct File {
        pub category: &'static str,
        pub name: String,
        pub bytes: Vec<u8>,
    }

    /// The largest frame body a host accepts (`DEFAULT_MAX_FRAME`).
    const MAX_FRAME: u32 = 4 << 20;

    // ---- CBOR, by hand (RFC 8949) -------------------------------------------

    /// The shortest head for `major` with argument `n`.
    fn head(major: u8, n: u64) -> Vec<u8> {
        let m = major << 5;
        if n < 24 {
            vec![m | n as u8]
        } else if n <= 0xff {
            vec![m | 24, n as u8]
        } else if n <= 0xffff {
            let mut v = vec![m | 25];
            v.extend((n as u16).to_be_bytes());
            v
        } else if n <= 0xffff_ffff {
            let mut v = vec![m | 26];
            v.extend((n as u32).to_be_bytes());
            v
        } else {
            let mut v = vec![m | 27];
            v.extend(n.to_be_bytes());
            v
        }
    }

    /// A head with an explicit additional-info width (for non-shortest forms).
    fn head_wide(major: u8, ai: u8, n: u64) -> Vec<u8> {
        let mut v = vec![major << 5 | ai];
        match ai {
            24 => v.push(n as u8),
            25 => v.extend((n as u16).to_be_bytes()),
            26 => v.extend((n as u32).to_be_bytes()),
            27 => v.extend(n.to_be_bytes()),
            _ => panic!("head_wide needs ai 24..=27"),
        }
        v
    }

    fn uint(n: u64) -> Vec<u8> {
        head(0, n)
    }

    /// The negative integer `-1 - n`.
    fn nint(n: u64) -> Vec<u8> {
        head(1, n)
    }

    fn bytes(b: &[u8]) -> Vec<u8> {
        cat(&[&head(2, b.len() as u64), b])
    }

    fn text(s: &str) -> Vec<u8> {
        raw_text(s.as_bytes())
    }

    /// A text string of arbitrary (possibly invalid UTF-8) bytes.
    fn raw_text(b: &[u8]) -> Vec<u8> {
        cat(&[&head(3, b.len() as u64), b])
    }

    fn array(items: &[Vec<u8>]) -> Vec<u8> {
        let mut v = head(4, items.len() as u64);
        for item in items {
            v.extend(item);
        }
        v
    }

    fn map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut v = head(5, entries.len() as u64);
        for (k, x) in entries {
            v.extend(k);
            v.extend(x);
        }
        v
    }

    fn tag(t: u64, inner: &[u8]) -> Vec<u8> {
        cat(&[&head(6, t), inner])
    }

    const FALSE: u8 = 0xf4;
    const TRUE: u8 = 0xf5;
    const NULL: u8 = 0xf6;
    const UNDEFINED: u8 = 0xf7;
    const BREAK: u8 = 0xff;

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn repeat(pattern: &[u8], n: usize) -> Vec<u8> {
        pattern.repeat(n)
    }

    /// Length prefix + body.
    fn frame(body: &[u8]) -> Vec<u8> {
        cat(&[&(body.len() as u32).to_be_bytes(), body])
    }

    fn prefixed(len: u32, body: &[u8]) -> Vec<u8> {
        cat(&[&len.to_be_bytes(), body])
    }

    // ---- messages ------------------------------------------------------------

    /// A message as its kind and its body's fields (encoded keys and values),
    /// so that single fields can be replaced, repeated or dropped.
    #[derive(Clone)]
    struct Msg {
        kind: &'static str,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl Msg {
        fn new(kind: &'static str, fields: &[(&str, Vec<u8>)]) -> Msg {
            Msg {
                kind,
                fields: fields.iter().map(|(k, v)| (text(k), v.clone())).collect(),
            }
        }

        /// `{kind: {fields}}`.
        fn body(&self) -> Vec<u8> {
            self.body_with(&map(&self.fields))
        }

        /// `{kind: inner}` with raw bytes for the inner item.
        fn body_with(&self, inner: &[u8]) -> Vec<u8> {
            cat(&[&head(5, 1), &text(self.kind), inner])
        }

        fn frame(&self) -> Vec<u8> {
            frame(&self.body())
        }

        /// The same message with `key` set to `value` (appended when absent).
        fn set(&self, key: &str, value: Vec<u8>) -> Msg {
            let mut m = self.clone();
            let k = text(key);
            match m.fields.iter_mut().find(|(fk, _)| *fk == k) {
                Some(field) => field.1 = value,
                None => m.fields.push((k, value)),
            }
            m
        }

        /// The same message with an extra raw entry (the key may repeat).
        fn push(&self, key: Vec<u8>, value: Vec<u8>) -> Msg {
            let mut m = self.clone();
            m.fields.push((key, value));
            m
        }

        /// The same message with `key` given an encoded key of another form.
        fn rekey(&self, key: &str, new_key: Vec<u8>) -> Msg {
            let mut m = self.clone();
            let k = text(key);
            for field in &mut m.fields {
                if field.0 == k {
                    field.0 = new_key.clone();
                }
            }
            m
        }

        fn without(&self, key: &str) -> Msg {
            let mut m = self.clone();
            let k = text(key);
            m.fields.retain(|(fk, _)| *fk != k);
            m
        }

        /// The value of `key` (the valid one).
        fn get(&self, key: &str) -> Vec<u8> {
            let k = text(key);
            self.fields
                .iter()
                .find(|(fk, _)| *fk == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{} has no field {key}", self.kind))
        }
    }

    /// `{"call": {"id": 1, "function": "math.add", "args": [2, 3]}}` (PROTOCOL.md §10.3).
    fn call() -> Msg {
        call_id(1)
    }

    fn call_id(id: u64) -> Msg {
        Msg::new(
            "call",
            &[
                ("id", uint(id)),
                ("function", text("math.add")),
                ("args", array(&[uint(2), uint(3)])),
            ],
        )
    }

    /// Valid values for the optional fields of `call`.
    fn call_optional(field: &str) -> Vec<u8> {
        match field {
            "deadline_ms" => uint(1000),
            "hops" => uint(0),
            "visited" => array(&[]),
            "metadata" => map(&[]),
            _ => unreachable!(),
        }
    }

    const CALL_FIELDS: [&str; 7] = [
        "id",
        "function",
        "args",
        "deadline_ms",
        "hops",
        "visited",
        "metadata",
    ];

    /// The call with `field` present: its own valid value when optional.
    fn call_with(field: &str) -> Msg {
        match field {
            "id" | "function" | "args" => call(),
            optional => call().set(optional, call_optional(optional)),
        }
    }

    fn ping() -> Msg {
        ping_nonce(7)
    }

    fn ping_nonce(nonce: u64) -> Msg {
        Msg::new("ping", &[("nonce", uint(nonce))])
    }

    fn pong() -> Msg {
        Msg::new("pong", &[("nonce", uint(7))])
    }

    fn list() -> Msg {
        Msg::new("list", &[("id", uint(3))])
    }

    fn cancel() -> Msg {
        Msg::new("cancel", &[("id", uint(4))])
    }

    fn hello() -> Msg {
        Msg::new("hello", &[("version", uint(1)), ("role", text("client"))])
    }

    fn reply() -> Msg {
        Msg::new("reply", &[("id", uint(1)), ("value", uint(5))])
    }

    /// Single-field messages and the field, for the per-field cases.
    fn small_messages() -> [(Msg, &'static str); 3] {
        [(ping(), "nonce"), (cancel(), "id"), (list(), "id")]
    }

    // ---- the corpus ------------------------------------------------------------

    struct Corpus {
        files: Vec<File>,
        names: BTreeSet<String>,
    }

    impl Corpus {
        fn add(&mut self, category: &'static str, name: impl Into<String>, bytes: Vec<u8>) {
            let name = format!("{}.bin", name.into());
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                "file name `{name}` has unusual characters"
            );
            assert!(self.names.insert(name.clone()), "duplicate file `{name}`");
            assert!(!bytes.is_empty(), "`{name}` is empty");
            self.files.push(File {
                category,
                name,
                bytes,
            });
        }
    }

    /// Every corpus file, sorted by name.
    pub fn generate() -> Vec<File> {
        check_reference_frames();
        let mut c = Corpus {
            files: Vec::new(),
            names: BTreeSet::new(),
        };
        truncations(&mut c);
        bit_flips(&mut c);
        major_types(&mut c);
        keys(&mut c);
        reserved_encodings(&mut c);
        indefinite_lengths(&mut c);
        lying_lengths(&mut c);
        nesting(&mut c);
        length_prefixes(&mut c);
        splits_and_batches(&mut c);
        messages_out_of_place(&mut c);
        envelopes_and_scalars(&mut c);
        before_hello(&mut c);
        c.files.sort_by(|a, b| a.name.cmp(&b.name));
        c.files
    }

    /// The base frames are byte-for-byte those of PROTOCOL.md §10.
    fn check_reference_frames() {
        let hex = |s: &str| -> Vec<u8> {
            s.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap())
                .collect()
        };
        assert_eq!(
            call().frame(),
            hex(
                "00 00 00 25 a1 64 63 61 6c 6c a3 62 69 64 01 68 66 75 6e 63 74 69 6f 6e 68 6d \
                 61 74 68 2e 61 64 64 64 61 72 67 73 82 02 03"
            )
        );
        assert_eq!(
            ping().frame(),
            hex("00 00 00 0e a1 64 70 69 6e 67 a1 65 6e 6f 6e 63 65 07")
        );
        assert_eq!(
            pong().frame(),
            hex("00 00 00 0e a1 64 70 6f 6e 67 a1 65 6e 6f 6e 63 65 07")
        );
        assert_eq!(
            list().frame(),
            hex("00 00 00 0b a1 64 6c 69 73 74 a1 62 69 64 03")
        );
        assert_eq!(
            cancel().frame(),
            hex("00 00 00 0d a1 66 63 61 6e 63 65 6c a1 62 69 64 04")
        );
        assert_eq!(
            reply().frame(),
            hex("00 00 00 13 a1 65 72 65 70 6c 79 a2 62 69 64 01 65 76 61 6c 75 65 05")
        );
    }

    /// Every prefix of valid frames, as a stream cut short (the host waits
    /// for the rest) and as a complete frame whose CBOR is cut short.
    fn truncations(c: &mut Corpus) {
        let bases = [
            ("call", call()),
            ("ping", ping()),
            ("list", list()),
            ("cancel", cancel()),
            ("hello", hello()),
        ];
        for (name, msg) in &bases {
            let full = msg.frame();
            for n in 1..full.len() {
                c.add(
                    "truncated stream",
                    format!("truncated-{name}-at-{n}"),
                    full[..n].to_vec(),
                );
            }
            let body = msg.body();
            for n in 0..body.len() {
                c.add(
                    "truncated CBOR in a complete frame",
                    format!("truncated-cbor-{name}-at-{n}"),
                    frame(&body[..n]),
                );
            }
        }
        let full = hello().frame();
        for n in 1..full.len() {
            c.add(
                "truncated stream",
                format!("prehello-truncated-hello-at-{n}"),
                full[..n].to_vec(),
            );
        }
    }

    /// One bit flipped per byte, the bit varying with the offset.
    fn bit_flips(c: &mut Corpus) {
        let bases = [
            ("call", call().frame()),
            ("ping", ping().frame()),
            ("list", list().frame()),
            ("cancel", cancel().frame()),
            ("reply", reply().frame()),
        ];
        for (name, full) in &bases {
            for i in 0..full.len() {
                let bit = (i * 5 + 6) % 8;
                let mut flipped = full.clone();
                flipped[i] ^= 1 << bit;
                c.add(
                    "bit flips",
                    format!("bitflip-{name}-byte-{i}-bit-{bit}"),
                    flipped,
                );
            }
        }
        // Every bit of the envelope's first bytes of a call (map head, kind).
        let full = call().frame();
        for i in 4..10 {
            for bit in 0..8 {
                if bit == (i * 5 + 6) % 8 {
                    continue;
                }
                let mut flipped = full.clone();
                flipped[i] ^= 1 << bit;
                c.add(
                    "bit flips",
                    format!("bitflip-call-byte-{i}-bit-{bit}"),
                    flipped,
                );
            }
        }
    }

    /// One item of each major type (and several of major type 7). Major type
    /// 6 is a tag wrapped around `valid`, the field's own valid value.
    fn samples(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("major-type-0", uint(1 << 32)),
            ("major-type-1", nint(0)),
            ("major-type-2", bytes(b"math.add")),
            ("major-type-3", text("x")),
            ("major-type-4", array(&[uint(1)])),
            ("major-type-5", map(&[(text("id"), uint(1))])),
            ("major-type-6", tag(6, valid)),
            ("major-type-7-false", vec![FALSE]),
            ("major-type-7-null", vec![NULL]),
            ("major-type-7-undefined", vec![UNDEFINED]),
            ("major-type-7-float16", vec![0xf9, 0x3c, 0x00]),
            ("major-type-7-float32", vec![0xfa, 0x3f, 0xc0, 0x00, 0x00]),
            (
                "major-type-7-float64-nan",
                vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
            ),
            ("major-type-7-simple-16", vec![0xf0]),
            ("major-type-7-simple-255", vec![0xf8, 0xff]),
            ("major-type-7-simple-19-in-two-bytes", vec![0xf8, 0x13]),
        ]
    }

    /// Every major type in every field of `call`, `ping`, `cancel`, `list`,
    /// as their bodies, and as the envelope.
    fn major_types(c: &mut Corpus) {
        const CAT: &str = "major types in every field";
        for field in CALL_FIELDS {
            let base = call_with(field);
            for (sample, value) in samples(&base.get(field)) {
                c.add(
                    CAT,
                    format!("{sample}-in-call.{field}"),
                    base.set(field, value).frame(),
                );
            }
        }
        for (sample, value) in samples(&uint(2)) {
            c.add(
                CAT,
                format!("{sample}-in-call.args.0"),
                call()
                    .set("args", cat(&[&[0x82], &value, &uint(3)]))
                    .frame(),
            );
            c.add(
                CAT,
                format!("{sample}-in-call.args.1"),
                call()
                    .set("args", cat(&[&[0x82], &uint(2), &value]))
                    .frame(),
            );
        }
        for msg in [call(), ping(), cancel(), list()] {
            for (sample, value) in samples(&map(&msg.fields)) {
                c.add(
                    CAT,
                    format!("{sample}-as-{}.body", msg.kind),
                    frame(&msg.body_with(&value)),
                );
            }
        }
        for (msg, field) in small_messages() {
            for (sample, value) in samples(&msg.get(field)) {
                c.add(
                    CAT,
                    format!("{sample}-in-{}.{field}", msg.kind),
                    msg.set(field, value).frame(),
                );
            }
        }
        for (sample, value) in samples(&ping().body()) {
            c.add(CAT, format!("{sample}-as-envelope"), frame(&value));
        }
    }

    /// Duplicate, unknown and oddly typed keys; unknown kinds; missing fields.
    fn keys(c: &mut Corpus) {
        for field in CALL_FIELDS {
            let base = call_with(field);
            c.add(
                "duplicate keys",
                format!("duplicate-key-call.{field}"),
                base.push(text(field), base.get(field)).frame(),
            );
        }
        for (msg, field) in small_messages().into_iter().chain([(pong(), "nonce")]) {
            c.add(
                "duplicate keys",
                format!("duplicate-key-{}.{field}", msg.kind),
                msg.push(text(field), msg.get(field)).frame(),
            );
        }
        c.add(
            "duplicate keys",
            "duplicate-key-ping.nonce-different-values",
            ping().push(text("nonce"), uint(8)).frame(),
        );
        c.add(
            "duplicate keys",
            "duplicate-key-call.id-different-values",
            call().push(text("id"), uint(2)).frame(),
        );
        c.add(
            "duplicate keys",
            "duplicate-key-hello.version",
            hello().push(text("version"), uint(1)).frame(),
        );
        let ping_inner = map(&ping().fields);
        c.add(
            "duplicate keys",
            "duplicate-key-envelope.ping",
            frame(&cat(&[
                &head(5, 2),
                &text("ping"),
                &ping_inner,
                &text("ping"),
                &ping_inner,
            ])),
        );
        c.add(
            "duplicate keys",
            "duplicate-key-call.metadata.entry",
            call()
                .set(
                    "metadata",
                    map(&[(text("a"), text("1")), (text("a"), text("2"))]),
                )
                .frame(),
        );
        c.add(
            "duplicate keys",
            "duplicate-key-in-call.args.0-map",
            call()
                .set(
                    "args",
                    array(&[map(&[(text("a"), uint(1)), (text("a"), uint(2))]), uint(3)]),
                )
                .frame(),
        );

        let unknown_call_keys: &[(&str, &[u8])] = &[
            ("extra", b"extra"),
            ("ID", b"ID"),
            ("Id", b"Id"),
            ("deadlineMs", b"deadlineMs"),
            ("deadline-ms", b"deadline-ms"),
            ("empty", b""),
            ("id-nul", b"id\0"),
            ("id-space", b"id "),
            ("function_", b"function_"),
            ("value", b"value"),
        ];
        for (name, key) in unknown_call_keys {
            c.add(
                "unknown keys and kinds",
                format!("unknown-key-call.{name}"),
                call().push(raw_text(key), uint(2)).frame(),
            );
        }
        for (msg, _) in small_messages().into_iter().chain([(pong(), "nonce")]) {
            c.add(
                "unknown keys and kinds",
                format!("unknown-key-{}.extra", msg.kind),
                msg.push(text("extra"), uint(2)).frame(),
            );
        }
        c.add(
            "unknown keys and kinds",
            "unknown-key-ping.Nonce",
            ping().rekey("nonce", text("Nonce")).frame(),
        );
        let kinds: &[(&str, &[u8])] = &[
            ("shout", b"shout"),
            ("Call", b"Call"),
            ("CALL", b"CALL"),
            ("empty", b""),
            ("call-space", b"call "),
            ("call-nul", b"call\0"),
            ("calll", b"calll"),
            ("catalog-update", b"catalog-update"),
        ];
        for (name, kind) in kinds {
            c.add(
                "unknown keys and kinds",
                format!("unknown-kind-{name}"),
                frame(&cat(&[&head(5, 1), &raw_text(kind), &map(&call().fields)])),
            );
        }

        // Keys of other major types (text is the normal one).
        let key_samples = |name: &str| -> Vec<(&'static str, Vec<u8>)> {
            vec![
                ("major-type-0", uint(0)),
                ("major-type-1", nint(0)),
                ("major-type-2", bytes(name.as_bytes())),
                ("major-type-4", array(&[text(name)])),
                ("major-type-5", map(&[])),
                ("major-type-6", tag(6, &text(name))),
                ("major-type-7-null", vec![NULL]),
            ]
        };
        for (sample, key) in key_samples("id") {
            c.add(
                "keys of other types",
                format!("{sample}-as-key-call.id"),
                call().rekey("id", key).frame(),
            );
        }
        for (sample, key) in key_samples("nonce") {
            c.add(
                "keys of other types",
                format!("{sample}-as-key-ping.nonce"),
                ping().rekey("nonce", key).frame(),
            );
        }
        for (sample, key) in key_samples("ping") {
            c.add(
                "keys of other types",
                format!("{sample}-as-key-envelope.ping"),
                frame(&cat(&[&head(5, 1), &key, &map(&ping().fields)])),
            );
        }

        for field in ["id", "function", "args"] {
            c.add(
                "missing fields",
                format!("missing-field-call.{field}"),
                call().without(field).frame(),
            );
        }
        for (msg, field) in small_messages().into_iter().chain([(pong(), "nonce")]) {
            c.add(
                "missing fields",
                format!("missing-field-{}.{field}", msg.kind),
                msg.without(field).frame(),
            );
        }
    }

    /// Additional information 28, 29 and 30 (reserved), 31 where a major type
    /// has no indefinite form, and lone breaks.
    fn reserved_encodings(c: &mut Corpus) {
        const CAT: &str = "reserved encodings and lone breaks";
        for ai in [28u8, 29, 30] {
            for major in 0..8u8 {
                let item = vec![major << 5 | ai];
                let name = if major == 0 {
                    format!("reserved-ai-{ai}-in-ping.nonce")
                } else {
                    format!("reserved-ai-{ai}-major-{major}-in-ping.nonce")
                };
                c.add(CAT, name, ping().set("nonce", item).frame());
            }
            let natural = |major: u8| vec![major << 5 | ai];
            let cases: Vec<(&str, Vec<u8>)> = vec![
                ("call.id", call().set("id", natural(0)).frame()),
                ("call.function", call().set("function", natural(3)).frame()),
                ("call.args", call().set("args", natural(4)).frame()),
                (
                    "call.args.0",
                    call()
                        .set("args", cat(&[&[0x82], &natural(0), &uint(3)]))
                        .frame(),
                ),
                (
                    "call.deadline_ms",
                    call().set("deadline_ms", natural(0)).frame(),
                ),
                ("call.metadata", call().set("metadata", natural(5)).frame()),
                ("call.body", frame(&call().body_with(&natural(5)))),
                ("envelope", frame(&natural(5))),
                ("key-call.id", call().rekey("id", natural(3)).frame()),
                ("cancel.id", cancel().set("id", natural(0)).frame()),
                ("list.id", list().set("id", natural(0)).frame()),
            ];
            for (position, bytes) in cases {
                c.add(CAT, format!("reserved-ai-{ai}-in-{position}"), bytes);
            }
        }
        // ai 31 is "indefinite length" for majors 2-5 and "break" for 7; it is
        // not well-formed for 0, 1 and 6.
        for major in [0u8, 1, 6] {
            let item = vec![major << 5 | 31];
            c.add(
                CAT,
                format!("indefinite-ai-31-major-{major}-in-ping.nonce"),
                ping().set("nonce", item.clone()).frame(),
            );
            c.add(
                CAT,
                format!("indefinite-ai-31-major-{major}-in-call.args.0"),
                call().set("args", cat(&[&[0x82], &item, &uint(3)])).frame(),
            );
        }
        c.add(CAT, "lone-break-as-envelope", frame(&[BREAK]));
        c.add(
            CAT,
            "lone-break-after-envelope-ping",
            frame(&cat(&[&ping().body(), &[BREAK]])),
        );
        c.add(
            CAT,
            "lone-break-as-call.body",
            frame(&call().body_with(&[BREAK])),
        );
        for field in ["id", "function", "args"] {
            c.add(
                CAT,
                format!("lone-break-in-call.{field}"),
                call().set(field, vec![BREAK]).frame(),
            );
        }
        c.add(
            CAT,
            "lone-break-in-call.args.0",
            call()
                .set("args", cat(&[&[0x82], &[BREAK], &uint(3)]))
                .frame(),
        );
        c.add(
            CAT,
            "lone-break-as-key-call.id",
            call().rekey("id", vec![BREAK]).frame(),
        );
        c.add(
            CAT,
            "lone-break-in-ping.nonce",
            ping().set("nonce", vec![BREAK]).frame(),
        );
        c.add(
            CAT,
            "lone-break-as-kind",
            frame(&cat(&[&head(5, 1), &[BREAK], &map(&ping().fields)])),
        );
        // Non-shortest (but well-formed) integers and lengths: accepted.
        for ai in [24u8, 25, 26, 27] {
            c.add(
                "non-shortest forms",
                format!("non-shortest-ai-{ai}-uint-in-call.id"),
                call().set("id", head_wide(0, ai, 1)).frame(),
            );
            c.add(
                "non-shortest forms",
                format!("non-shortest-ai-{ai}-length-of-kind-ping"),
                frame(&cat(&[
                    &head(5, 1),
                    &head_wide(3, ai, 4),
                    b"ping",
                    &map(&ping().fields),
                ])),
            );
            c.add(
                "non-shortest forms",
                format!("non-shortest-ai-{ai}-length-of-call.args"),
                call()
                    .set("args", cat(&[&head_wide(4, ai, 2), &uint(2), &uint(3)]))
                    .frame(),
            );
        }
    }

    /// Indefinite-length items, valid and broken.
    fn indefinite_lengths(c: &mut Corpus) {
        const CAT: &str = "indefinite-length items";
        let ping_fields = cat(&[&text("nonce"), &uint(7)]);
        c.add(
            CAT,
            "indefinite-envelope-map-ping",
            frame(&cat(&[
                &[0xbf],
                &text("ping"),
                &map(&ping().fields),
                &[BREAK],
            ])),
        );
        c.add(
            CAT,
            "indefinite-envelope-map-ping-no-break",
            frame(&cat(&[&[0xbf], &text("ping"), &map(&ping().fields)])),
        );
        c.add(
            CAT,
            "indefinite-body-map-ping",
            frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields, &[BREAK]]))),
        );
        c.add(
            CAT,
            "indefinite-body-map-ping-no-break",
            frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields]))),
        );
        c.add(
            CAT,
            "indefinite-body-map-ping-odd-items",
            frame(&ping().body_with(&cat(&[&[0xbf], &ping_fields, &text("extra"), &[BREAK]]))),
        );
        c.add(
            CAT,
            "indefinite-args-array-call",
            call()
                .set("args", cat(&[&[0x9f], &uint(2), &uint(3), &[BREAK]]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-args-array-call-no-break",
            call()
                .set("args", cat(&[&[0x9f], &uint(2), &uint(3)]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-args-array-call-extra-break",
            call()
                .set("args", cat(&[&[0x9f], &uint(2), &uint(3), &[BREAK, BREAK]]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-call.function",
            call()
                .set(
                    "function",
                    cat(&[&[0x7f], &text("math"), &text(".add"), &[BREAK]]),
                )
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-empty-call.function",
            call().set("function", vec![0x7f, BREAK]).frame(),
        );
        c.add(
            CAT,
            "indefinite-text-bytes-chunk-call.function",
            call()
                .set("function", cat(&[&[0x7f], &bytes(b"math.add"), &[BREAK]]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-nested-indefinite-chunk-call.function",
            call()
                .set(
                    "function",
                    cat(&[&[0x7f, 0x7f], &text("math.add"), &[BREAK, BREAK]]),
                )
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-uint-chunk-call.function",
            call()
                .set("function", cat(&[&[0x7f], &uint(1), &[BREAK]]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-no-break-call.function",
            call()
                .set("function", cat(&[&[0x7f], &text("math.add")]))
                .frame(),
        );
        // "é" (c3 a9) split across two chunks: each chunk must be valid UTF-8.
        c.add(
            CAT,
            "indefinite-text-utf8-split-across-chunks-call.function",
            call()
                .set(
                    "function",
                    cat(&[
                        &[0x7f],
                        &raw_text(b"math.\xc3"),
                        &raw_text(b"\xa9"),
                        &[BREAK],
                    ]),
                )
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-text-kind-ping",
            frame(&cat(&[
                &head(5, 1),
                &[0x7f],
                &text("pi"),
                &text("ng"),
                &[BREAK],
                &map(&ping().fields),
            ])),
        );
        c.add(
            CAT,
            "indefinite-bytes-in-call.args.0",
            call()
                .set(
                    "args",
                    array(&[
                        cat(&[&[0x5f], &bytes(&[1]), &bytes(&[2]), &[BREAK]]),
                        uint(3),
                    ]),
                )
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-map-in-call.args.0",
            call()
                .set(
                    "args",
                    array(&[cat(&[&[0xbf], &text("a"), &uint(1), &[BREAK]]), uint(3)]),
                )
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-array-as-envelope",
            frame(&cat(&[
                &[0x9f],
                &text("ping"),
                &map(&ping().fields),
                &[BREAK],
            ])),
        );
        c.add(
            CAT,
            "indefinite-array-call.visited",
            call()
                .set("visited", cat(&[&[0x9f], &text("eu-west"), &[BREAK]]))
                .frame(),
        );
        c.add(
            CAT,
            "indefinite-map-call.metadata",
            call()
                .set(
                    "metadata",
                    cat(&[&[0xbf], &text("k"), &text("v"), &[BREAK]]),
                )
                .frame(),
        );
    }

    /// Heads claiming far more content than the frame holds.
    fn lying_lengths(c: &mut Corpus) {
        const CAT: &str = "lying lengths";
        let lengths: [(&str, Vec<u8>); 3] = [
            ("2pow32-1", vec![26, 0xff, 0xff, 0xff, 0xff]),
            ("2pow32", vec![27, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                "2pow64-1",
                vec![27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        let majors = [("bytes", 2u8), ("text", 3), ("array", 4), ("map", 5)];
        for (length, tail) in &lengths {
            for (kind, major) in majors {
                let lie = cat(&[&[major << 5 | tail[0]], &tail[1..]]);
                let call_fields = map(&call().fields);
                let cases: Vec<(&str, Vec<u8>)> = vec![
                    ("call.args", call().set("args", lie.clone()).frame()),
                    (
                        "call.args.0",
                        call().set("args", cat(&[&[0x82], &lie, &uint(3)])).frame(),
                    ),
                    ("call.function", call().set("function", lie.clone()).frame()),
                    (
                        "call.visited",
                        call_with("visited").set("visited", lie.clone()).frame(),
                    ),
                    (
                        "call.metadata",
                        call_with("metadata").set("metadata", lie.clone()).frame(),
                    ),
                    (
                        "call.body",
                        frame(&call().body_with(&cat(&[&lie, &call_fields[1..]]))),
                    ),
                    ("envelope", frame(&cat(&[&lie, &call().body()[1..]]))),
                    ("key-call.id", call().rekey("id", lie.clone()).frame()),
                ];
                for (position, bytes) in cases {
                    c.add(
                        CAT,
                        format!("lying-length-{kind}-{length}-in-{position}"),
                        bytes,
                    );
                }
            }
            // A chunk of an indefinite text string that lies.
            c.add(
                CAT,
                format!("lying-length-text-chunk-{length}-in-call.function"),
                call()
                    .set(
                        "function",
                        cat(&[&[0x7f], &[0x60 | tail[0]], &tail[1..], b"math", &[BREAK]]),
                    )
                    .frame(),
            );
        }
    }

    /// Nesting bombs (100 000 levels) and the documented depth limits.
    fn nesting(c: &mut Corpus) {
        const CAT: &str = "nesting bombs and depth limits";
        const N: usize = 100_000;
        let arg0 = |value: Vec<u8>| call().set("args", cat(&[&[0x81], &value])).frame();
        let bombs: Vec<(&str, Vec<u8>)> = vec![
            ("arrays", cat(&[&repeat(&[0x81], N), &[0x00]])),
            ("maps", cat(&[&repeat(&[0xa1, 0x00], N), &[0x00]])),
            (
                "map-keys",
                cat(&[&repeat(&[0xa1], N), &[0x00, 0x00], &repeat(&[0x00], N - 1)]),
            ),
            ("tags", cat(&[&repeat(&[0xc6], N), &[0x00]])),
            ("bignum-tags", cat(&[&repeat(&[0xc2], N), &bytes(&[1])])),
            (
                "indefinite-arrays",
                cat(&[&repeat(&[0x9f], N), &repeat(&[BREAK], N)]),
            ),
            ("indefinite-arrays-unclosed", repeat(&[0x9f], N)),
            (
                "indefinite-maps",
                cat(&[&repeat(&[0xbf, 0x00], N), &[0x00], &repeat(&[BREAK], N)]),
            ),
            (
                "mixed",
                cat(&[&repeat(&[0x81, 0xa1, 0x00, 0xc6], N / 4), &[0x00]]),
            ),
        ];
        for (name, bomb) in &bombs {
            c.add(
                CAT,
                format!("nesting-bomb-{N}-{name}-in-call.args.0"),
                arg0(bomb.clone()),
            );
        }
        let arrays = &bombs[0].1;
        c.add(
            CAT,
            format!("nesting-bomb-{N}-arrays-as-envelope"),
            frame(arrays),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-arrays-as-call.body"),
            frame(&call().body_with(arrays)),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-arrays-in-call.metadata"),
            call()
                .set("metadata", cat(&[&[0xa1], &text("k"), arrays]))
                .frame(),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-arrays-in-call.visited"),
            call().set("visited", cat(&[&[0x81], arrays])).frame(),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-tags-in-ping.nonce"),
            ping()
                .set("nonce", cat(&[&repeat(&[0xc6], N), &uint(7)]))
                .frame(),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-tags-around-envelope-ping"),
            frame(&cat(&[&repeat(&[0xc6], N), &ping().body()])),
        );
        c.add(
            CAT,
            format!("nesting-bomb-{N}-tags-around-call.body"),
            frame(&call().body_with(&cat(&[&repeat(&[0xc6], N), &map(&call().fields)]))),
        );
        // The limits: each argument may nest 63 levels, the frame 80.
        let nested = |depth: usize| cat(&[&repeat(&[0x81], depth), &[0x00]]);
        for depth in [63usize, 64, 77, 78] {
            c.add(
                CAT,
                format!("nesting-depth-{depth}-arrays-in-call.args.0"),
                call().set("args", array(&[nested(depth), uint(3)])).frame(),
            );
        }
        for depth in [63usize, 64] {
            c.add(
                CAT,
                format!("nesting-depth-{depth}-tags-in-call.args.0"),
                call()
                    .set(
                        "args",
                        array(&[cat(&[&repeat(&[0xc6], depth), &[0x00]]), uint(3)]),
                    )
                    .frame(),
            );
            c.add(
                CAT,
                format!("nesting-depth-{depth}-maps-in-call.args.0"),
                call()
                    .set(
                        "args",
                        array(&[cat(&[&repeat(&[0xa1, 0x00], depth), &[0x00]]), uint(3)]),
                    )
                    .frame(),
            );
        }
    }

    /// Length prefixes that do not match the body.
    fn length_prefixes(c: &mut Corpus) {
        const CAT: &str = "wrong length prefixes";
        let body = call().body();
        let len = body.len() as u32;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length-prefix-0", prefixed(0, &[])),
            (
                "length-prefix-0-then-ping",
                cat(&[&prefixed(0, &[]), &ping().frame()]),
            ),
            ("length-prefix-1-call", prefixed(1, &body)),
            ("length-prefix-body-minus-1-call", prefixed(len - 1, &body)),
            ("length-prefix-body-plus-1-call", prefixed(len + 1, &body)),
            (
                "length-prefix-body-plus-1000-call",
                prefixed(len + 1000, &body),
            ),
            ("length-prefix-4MiB-call", prefixed(MAX_FRAME, &body)),
            (
                "length-prefix-4MiB-plus-1-call",
                prefixed(MAX_FRAME + 1, &body),
            ),
            ("length-prefix-2pow31-call", prefixed(1 << 31, &body)),
            (
                "length-prefix-4GiB-0xffffffff-call",
                prefixed(u32::MAX, &body),
            ),
            (
                "length-prefix-4GiB-0xffffffff-only",
                u32::MAX.to_be_bytes().to_vec(),
            ),
            (
                "length-prefix-little-endian-call",
                cat(&[&len.to_le_bytes(), &body]),
            ),
            (
                "length-prefix-u64-call",
                cat(&[&u64::from(len).to_be_bytes(), &body]),
            ),
            (
                "length-prefix-u16-call",
                cat(&[&(len as u16).to_be_bytes(), &body]),
            ),
            ("length-prefix-missing-call", body.clone()),
            (
                "length-prefix-cbor-encoded-call",
                cat(&[&uint(u64::from(len)), &body]),
            ),
            (
                "length-prefix-ping-then-4GiB",
                cat(&[&ping().frame(), &u32::MAX.to_be_bytes(), &[0u8; 16]]),
            ),
        ];
        for (name, bytes) in cases {
            c.add(CAT, name, bytes);
        }
    }

    /// Frames split into 1-byte writes, and several frames in one write.
    fn splits_and_batches(c: &mut Corpus) {
        let splits: Vec<(&str, Vec<u8>)> = vec![
            ("call", call().frame()),
            ("ping", ping().frame()),
            ("list", list().frame()),
            ("cancel", cancel().frame()),
            ("pong", pong().frame()),
            ("call-ping", cat(&[&call().frame(), &ping().frame()])),
            ("hello", hello().frame()),
            (
                "unknown-kind",
                frame(&cat(&[&head(5, 1), &text("shout"), &map(&[])])),
            ),
            ("length-prefix-4GiB", prefixed(u32::MAX, &call().body())),
            (
                "nesting-depth-64-arrays-in-call.args.0",
                call()
                    .set(
                        "args",
                        array(&[cat(&[&repeat(&[0x81], 64), &[0x00]]), uint(3)]),
                    )
                    .frame(),
            ),
            ("truncated-call-at-20", call().frame()[..20].to_vec()),
        ];
        for (name, bytes) in splits {
            c.add(
                "split into 1-byte writes",
                format!("split-1byte-{name}"),
                bytes,
            );
        }

        const CAT: &str = "several frames in one write";
        let two: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
            ("ping-call", ping().frame(), call().frame()),
            ("call-ping", call().frame(), ping().frame()),
            ("ping-ping", ping_nonce(1).frame(), ping_nonce(2).frame()),
            ("call-call", call_id(1).frame(), call_id(2).frame()),
            ("list-ping", list().frame(), ping().frame()),
            ("ping-list", ping().frame(), list().frame()),
            ("pong-ping", pong().frame(), ping().frame()),
            ("cancel-ping", cancel().frame(), ping().frame()),
            ("call-list", call().frame(), list().frame()),
            (
                "call-cancel-same-id",
                call_id(9).frame(),
                Msg::new("cancel", &[("id", uint(9))]).frame(),
            ),
            (
                "call-divide-by-zero-ping",
                call()
                    .set("function", text("math.divide"))
                    .set("args", array(&[uint(1), uint(0)]))
                    .frame(),
                ping().frame(),
            ),
            (
                "call-unknown-function-ping",
                call().set("function", text("math.nope")).frame(),
                ping().frame(),
            ),
        ];
        for (name, a, b) in two {
            c.add(
                CAT,
                format!("two-frames-in-one-write-{name}"),
                cat(&[&a, &b]),
            );
        }
        let pings: Vec<u8> = (0..100).flat_map(|n| ping_nonce(n).frame()).collect();
        c.add(CAT, "many-frames-in-one-write-100-pings", pings);
        let calls: Vec<u8> = (1..=50).flat_map(|n| call_id(n).frame()).collect();
        c.add(CAT, "many-frames-in-one-write-50-calls", calls);
        let mixed: Vec<u8> = [
            call_id(1).frame(),
            ping().frame(),
            list().frame(),
            pong().frame(),
            call_id(2).frame(),
            cancel().frame(),
            ping_nonce(8).frame(),
        ]
        .concat();
        c.add(CAT, "many-frames-in-one-write-mixed-7", mixed);

        const THEN: &str = "valid frames then a bad one";
        let then: Vec<(&str, Vec<u8>)> = vec![
            (
                "ping-then-unknown-kind",
                frame(&cat(&[&head(5, 1), &text("shout"), &map(&[])])),
            ),
            ("ping-then-truncated-cbor", frame(&ping().body()[..8])),
            ("ping-then-hello", hello().frame()),
            ("ping-then-length-prefix-0", prefixed(0, &[])),
            ("ping-then-lone-break", frame(&[BREAK])),
            ("call-then-reply", reply().frame()),
            (
                "call-then-duplicate-key",
                ping().push(text("nonce"), uint(7)).frame(),
            ),
        ];
        for (name, bad) in then {
            let first = if name.starts_with("call") {
                call().frame()
            } else {
                ping().frame()
            };
            c.add(
                THEN,
                format!("valid-then-malformed-{name}"),
                cat(&[&first, &bad]),
            );
        }
    }

    /// Well-formed messages a caller must not send (the host's kinds) and
    /// valid frames with edge values.
    fn messages_out_of_place(c: &mut Corpus) {
        const CAT: &str = "messages a caller must not send";
        let functions = array(&[map(&[
            (text("name"), text("math.add")),
            (text("signature"), text("func(a: s64, b: s64) -> s64")),
            (text("regions"), array(&[text("test")])),
        ])]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("hello", hello().frame()),
            ("hello-role-host", hello().set("role", text("host")).frame()),
            ("reply", reply().frame()),
            (
                "error",
                Msg::new(
                    "error",
                    &[
                        ("id", uint(1)),
                        ("code", text("internal")),
                        ("message", text("x")),
                        ("processed", text("no")),
                    ],
                )
                .frame(),
            ),
            (
                "error-connection-level",
                Msg::new(
                    "error",
                    &[
                        ("code", text("protocol_error")),
                        ("message", text("x")),
                        ("processed", text("no")),
                    ],
                )
                .frame(),
            ),
            (
                "catalog",
                Msg::new(
                    "catalog",
                    &[("id", uint(3)), ("functions", functions.clone())],
                )
                .frame(),
            ),
            (
                "drain",
                Msg::new("drain", &[("message", text("bye"))]).frame(),
            ),
            (
                "catalog_update",
                Msg::new("catalog_update", &[("functions", functions)]).frame(),
            ),
        ];
        for (name, bytes) in cases {
            c.add(CAT, format!("unexpected-kind-{name}"), bytes);
        }

        const EDGE: &str = "valid frames with edge values";
        let edges: Vec<(&str, Vec<u8>)> = vec![
            ("call.id-0", call().set("id", uint(0)).frame()),
            ("call.id-2pow64-1", call().set("id", uint(u64::MAX)).frame()),
            (
                "call.deadline_ms-0",
                call().set("deadline_ms", uint(0)).frame(),
            ),
            (
                "call.deadline_ms-2pow64-1",
                call().set("deadline_ms", uint(u64::MAX)).frame(),
            ),
            (
                "call.deadline_ms-null",
                call().set("deadline_ms", vec![NULL]).frame(),
            ),
            ("call.hops-8", call().set("hops", uint(8)).frame()),
            ("call.hops-9", call().set("hops", uint(9)).frame()),
            (
                "call.hops-2pow32-1",
                call().set("hops", uint(u64::from(u32::MAX))).frame(),
            ),
            (
                "call.visited-own-region",
                call().set("visited", array(&[text("test")])).frame(),
            ),
            (
                "call.metadata-entries",
                call()
                    .set(
                        "metadata",
                        map(&[(text("trace"), text("abc")), (text(""), text(""))]),
                    )
                    .frame(),
            ),
            ("call.args-empty", call().set("args", array(&[])).frame()),
            (
                "call.args-three",
                call()
                    .set("args", array(&[uint(1), uint(2), uint(3)]))
                    .frame(),
            ),
            (
                "call.args-s64-overflow",
                call()
                    .set("args", array(&[uint(u64::MAX), uint(3)]))
                    .frame(),
            ),
            (
                "call.args-nint-2pow64",
                call()
                    .set("args", array(&[nint(u64::MAX), uint(3)]))
                    .frame(),
            ),
            (
                "call.function-empty",
                call().set("function", text("")).frame(),
            ),
            (
                "call.function-no-dot",
                call().set("function", text("add")).frame(),
            ),
            (
                "call.function-MATH.ADD",
                call().set("function", text("MATH.ADD")).frame(),
            ),
            (
                "call.function-nul",
                call().set("function", raw_text(b"math\0.add")).frame(),
            ),
            (
                "call.function-bom",
                call()
                    .set("function", raw_text(b"\xef\xbb\xbfmath.add"))
                    .frame(),
            ),
            (
                "call.function-64KiB",
                call().set("function", text(&"m".repeat(65536))).frame(),
            ),
            (
                "call.stats-nan-inf",
                call()
                    .set("function", text("math.stats"))
                    .set(
                        "args",
                        array(&[array(&[
                            vec![0xf9, 0x7e, 0x00],
                            vec![0xf9, 0x7c, 0x00],
                            vec![0xf9, 0xfc, 0x00],
                            vec![0xf9, 0x80, 0x00],
                        ])]),
                    )
                    .frame(),
            ),
            ("ping.nonce-0", ping_nonce(0).frame()),
            ("ping.nonce-2pow64-1", ping_nonce(u64::MAX).frame()),
            ("list.id-2pow64-1", list().set("id", uint(u64::MAX)).frame()),
            ("cancel.id-unknown", cancel().set("id", uint(12345)).frame()),
            ("pong", pong().frame()),
            (
                "reordered-keys-call",
                Msg::new(
                    "call",
                    &[
                        ("args", array(&[uint(2), uint(3)])),
                        ("function", text("math.add")),
                        ("id", uint(1)),
                    ],
                )
                .frame(),
            ),
            (
                "byte-string-keys-call",
                call()
                    .rekey("id", bytes(b"id"))
                    .rekey("function", bytes(b"function"))
                    .rekey("args", bytes(b"args"))
                    .frame(),
            ),
        ];
        for (name, bytes) in edges {
            c.add(EDGE, format!("edge-{name}"), bytes);
        }
    }

    /// Broken envelopes, integers out of range, bignums, floats, bad UTF-8.
    fn envelopes_and_scalars(c: &mut Corpus) {
        const ENV: &str = "broken envelopes";
        let ping_inner = map(&ping().fields);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("envelope-empty-map", frame(&map(&[]))),
            (
                "envelope-two-kinds-ping-call",
                frame(&cat(&[
                    &head(5, 2),
                    &text("ping"),
                    &ping_inner,
                    &text("call"),
                    &map(&call().fields),
                ])),
            ),
            (
                "envelope-array-ping",
                frame(&array(&[text("ping"), ping_inner.clone()])),
            ),
            ("envelope-text-ping", frame(&text("ping"))),
            ("envelope-kind-null-ping", frame(&ping().body_with(&[NULL]))),
            (
                "envelope-body-empty-map-call",
                frame(&call().body_with(&map(&[]))),
            ),
            (
                "envelope-trailing-byte-ping",
                frame(&cat(&[&ping().body(), &[0x00]])),
            ),
            (
                "envelope-trailing-100-bytes-ping",
                frame(&cat(&[&ping().body(), &[0x00; 100]])),
            ),
            (
                "envelope-two-items-ping-ping",
                frame(&cat(&[&ping().body(), &ping().body()])),
            ),
            (
                "envelope-tag-around-ping",
                frame(&tag(55799, &ping().body())),
            ),
            (
                "envelope-tag-around-kind-ping",
                frame(&cat(&[&head(5, 1), &tag(6, &text("ping")), &ping_inner])),
            ),
        ];
        for (name, bytes) in cases {
            c.add(ENV, name, bytes);
        }

        const INT: &str = "integers, bignums and floats";
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "uint-2pow32-in-call.hops",
                call().set("hops", uint(1 << 32)).frame(),
            ),
            (
                "nint-2pow64-in-call.id",
                call().set("id", nint(u64::MAX)).frame(),
            ),
            (
                "bignum-1-in-call.id",
                call().set("id", tag(2, &bytes(&[1]))).frame(),
            ),
            (
                "bignum-empty-in-ping.nonce",
                ping().set("nonce", tag(2, &bytes(&[]))).frame(),
            ),
            (
                "bignum-2pow64-in-call.id",
                call()
                    .set("id", tag(2, &bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0])))
                    .frame(),
            ),
            (
                "bignum-2pow128-in-call.args.0",
                call()
                    .set(
                        "args",
                        array(&[tag(2, &cat(&[&[0x51, 1], &[0u8; 16]])), uint(3)]),
                    )
                    .frame(),
            ),
            (
                "bignum-1000-bytes-in-call.args.0",
                call()
                    .set("args", array(&[tag(2, &bytes(&[0xff; 1000])), uint(3)]))
                    .frame(),
            ),
            (
                "bignum-1000-bytes-in-ping.nonce",
                ping().set("nonce", tag(2, &bytes(&[0xff; 1000]))).frame(),
            ),
            (
                "bignum-negative-in-ping.nonce",
                ping().set("nonce", tag(3, &bytes(&[1]))).frame(),
            ),
            (
                "bignum-negative-2pow64-in-call.args.0",
                call()
                    .set("args", array(&[tag(3, &bytes(&[0xff; 8])), uint(3)]))
                    .frame(),
            ),
            (
                "bignum-text-payload-in-ping.nonce",
                ping().set("nonce", tag(2, &text("1"))).frame(),
            ),
            (
                "bignum-indefinite-bytes-in-ping.nonce",
                ping()
                    .set("nonce", tag(2, &cat(&[&[0x5f], &bytes(&[1]), &[BREAK]])))
                    .frame(),
            ),
            (
                "float16-1.0-in-call.id",
                call().set("id", vec![0xf9, 0x3c, 0x00]).frame(),
            ),
            (
                "float64-1.0-in-ping.nonce",
                ping()
                    .set("nonce", vec![0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])
                    .frame(),
            ),
            (
                "float-nan-in-call.args.0",
                call()
                    .set("args", array(&[vec![0xf9, 0x7e, 0x00], uint(3)]))
                    .frame(),
            ),
            (
                "float-truncated-in-call.args.0",
                call().set("args", cat(&[&[0x82, 0xfb, 0x3f]])).frame(),
            ),
            (
                "true-in-ping.nonce",
                ping().set("nonce", vec![TRUE]).frame(),
            ),
        ];
        for (name, bytes) in cases {
            c.add(INT, name, bytes);
        }

        const UTF: &str = "invalid UTF-8";
        let bad: [(&str, &[u8]); 5] = [
            ("invalid-byte", b"math.\xff"),
            ("overlong", b"math.\xc0\xae"),
            ("surrogate", b"math.\xed\xa0\x80"),
            ("truncated-sequence", b"math.\xe2\x82"),
            ("above-u10ffff", b"math.\xf4\x90\x80\x80"),
        ];
        for (name, raw) in bad {
            c.add(
                UTF,
                format!("utf8-{name}-in-call.function"),
                call().set("function", raw_text(raw)).frame(),
            );
        }
        c.add(
            UTF,
            "utf8-invalid-byte-in-kind",
            frame(&cat(&[&head(5, 1), &raw_text(b"p\xffng"), &ping_inner])),
        );
        c.add(
            UTF,
            "utf8-invalid-byte-in-key-ping.nonce",
            ping().rekey("nonce", raw_text(b"non\xffe")).frame(),
        );
        c.add(
            UTF,
            "utf8-invalid-byte-in-call.args.0",
            call()
                .set("args", array(&[raw_text(b"\xff"), uint(3)]))
                .frame(),
        );
        c.add(
            UTF,
            "utf8-invalid-byte-in-call.metadata",
            call()
                .set("metadata", map(&[(text("k"), raw_text(b"\xff"))]))
                .frame(),
        );
        c.add(
            UTF,
            "utf8-invalid-byte-in-call.visited",
            call().set("visited", array(&[raw_text(b"\xff")])).frame(),
        );
        c.add(
            UTF,
            "utf8-invalid-chunk-in-indefinite-call.function",
            call()
                .set(
                    "function",
                    cat(&[&[0x7f], &text("math."), &raw_text(b"\xff"), &[BREAK]]),
                )
                .frame(),
        );
    }

    /// Bytes sent as the very first bytes of a connection.
    fn before_hello(c: &mut Corpus) {
        const CAT: &str = "before hello (prehello-)";
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("call", call().frame()),
            ("ping", ping().frame()),
            ("list", list().frame()),
            ("cancel", cancel().frame()),
            ("pong", pong().frame()),
            ("reply", reply().frame()),
            ("hello-version-0", hello().set("version", uint(0)).frame()),
            ("hello-version-2", hello().set("version", uint(2)).frame()),
            (
                "hello-version-2pow32",
                hello().set("version", uint(1 << 32)).frame(),
            ),
            (
                "hello-version-text",
                hello().set("version", text("1")).frame(),
            ),
            (
                "hello-version-negative",
                hello().set("version", nint(0)).frame(),
            ),
            ("hello-role-host", hello().set("role", text("host")).frame()),
            (
                "hello-role-admin",
                hello().set("role", text("admin")).frame(),
            ),
            (
                "hello-role-Client",
                hello().set("role", text("Client")).frame(),
            ),
            ("hello-missing-role", hello().without("role").frame()),
            ("hello-missing-version", hello().without("version").frame()),
            (
                "hello-region-null",
                hello().set("region", vec![NULL]).frame(),
            ),
            (
                "hello-max-in-flight-0",
                hello().set("max_in_flight", uint(0)).frame(),
            ),
            ("hello-role-peer", hello().set("role", text("peer")).frame()),
            (
                "hello-extra-key",
                hello().push(text("extra"), uint(1)).frame(),
            ),
            (
                "duplicate-key-hello.version",
                hello().push(text("version"), uint(1)).frame(),
            ),
            (
                "duplicate-key-hello.role",
                hello().push(text("role"), text("client")).frame(),
            ),
            (
                "unknown-kind-helo",
                frame(&cat(&[&head(5, 1), &text("helo"), &map(&hello().fields)])),
            ),
            ("http-get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            (
                "tls-client-hello",
                vec![
                    0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0, 0, 0, 0,
                ],
            ),
            ("length-prefix-0", prefixed(0, &[])),
            (
                "length-prefix-4GiB-0xffffffff",
                prefixed(u32::MAX, &hello().body()),
            ),
            (
                "length-prefix-4MiB-plus-1",
                prefixed(MAX_FRAME + 1, &hello().body()),
            ),
            ("lone-break", frame(&[BREAK])),
            (
                "nesting-bomb-100000-arrays-in-hello.region",
                hello()
                    .set("region", cat(&[&repeat(&[0x81], 100_000), &[0x00]]))
                    .frame(),
            ),
            (
                "two-frames-in-one-write-hello-ping",
                cat(&[&hello().frame(), &ping().frame()]),
            ),
            (
                "two-frames-in-one-write-hello-call",
                cat(&[&hello().frame(), &call().frame()]),
            ),
            (
                "split-1byte-hello-call",
                cat(&[&hello().frame(), &call().frame()]),
            ),
        ];
        for (name, bytes) in cases {
            c.add(CAT, format!("prehello-{name}"), bytes);
        }
    }

    // ---- fuzz seeds ------------------------------------------------------------

    /// The complete frame bodies at the start of a byte stream (up to the
    /// first incomplete or oversized frame).
    pub fn complete_bodies(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        let mut rest = stream;
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
            if len > MAX_FRAME || rest.len() - 4 < len as usize {
                break;
            }
            bodies.push(rest[4..4 + len as usize].to_vec());
            rest = &rest[4 + len as usize..];
        }
        bodies
    }

    /// CBOR values for every parameter type of the `cbor_to_val` fuzz target
    /// (see its WAT): valid ones and near misses.
    pub fn value_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let record = |d: Vec<u8>| {
            map(&[
                (text("a"), uint(1)),
                (text("b"), text("x")),
                (text("c"), bytes(&[1, 2])),
                (text("d"), d),
            ])
        };
        vec![
            ("true", vec![TRUE]),
            ("false", vec![FALSE]),
            ("null", vec![NULL]),
            ("uint-0", uint(0)),
            ("uint-127", uint(127)),
            ("uint-255", uint(255)),
            ("uint-256", uint(256)),
            ("uint-65535", uint(65535)),
            ("uint-2pow31", uint(1 << 31)),
            ("uint-2pow32", uint(1 << 32)),
            ("uint-2pow63", uint(1 << 63)),
            ("uint-max", uint(u64::MAX)),
            ("nint-1", nint(0)),
            ("nint-129", nint(128)),
            ("nint-2pow63", nint((1 << 63) - 1)),
            ("nint-2pow63-1", nint(1 << 63)),
            ("nint-2pow64", nint(u64::MAX)),
            ("half-1.5", vec![0xf9, 0x3e, 0x00]),
            ("half-nan", vec![0xf9, 0x7e, 0x00]),
            ("half-inf", vec![0xf9, 0x7c, 0x00]),
            ("half-neg-zero", vec![0xf9, 0x80, 0x00]),
            ("single-1.5", vec![0xfa, 0x3f, 0xc0, 0x00, 0x00]),
            ("single-nan-payload", vec![0xfa, 0x7f, 0xc0, 0x00, 0x01]),
            (
                "double-f32-max",
                vec![0xfb, 0x47, 0xef, 0xff, 0xff, 0xe0, 0, 0, 0],
            ),
            (
                "double-above-f32-max",
                vec![0xfb, 0x47, 0xf0, 0, 0, 0, 0, 0, 0],
            ),
            (
                "double-nan-payload",
                vec![0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 1],
            ),
            ("double-tiny", vec![0xfb, 0, 0, 0, 0, 0, 0, 0, 1]),
            ("char-a", text("a")),
            ("char-e-acute", text("é")),
            ("char-emoji", text("😀")),
            ("text-two-chars", text("ab")),
            ("text-empty", text("")),
            ("bytes", bytes(&[1, 2, 3])),
            ("bytes-empty", bytes(&[])),
            ("array-of-u8", array(&[uint(1), uint(255)])),
            ("array-u8-out-of-range", array(&[uint(256)])),
            ("array-of-text", array(&[text("a"), text("b")])),
            (
                "tuple",
                array(&[uint(1), text("x"), vec![0xf9, 0x3e, 0x00]]),
            ),
            ("tuple-short", array(&[uint(1), text("x")])),
            ("record", record(text("red"))),
            ("record-d-null", record(vec![NULL])),
            ("record-unknown-field", map(&[(text("z"), uint(1))])),
            (
                "record-duplicate-field",
                map(&[(text("a"), uint(1)), (text("a"), uint(2))]),
            ),
            ("record-uint-key", map(&[(uint(1), uint(1))])),
            ("variant-none-text", text("none")),
            ("variant-none-map", map(&[(text("none"), vec![NULL])])),
            ("variant-num", map(&[(text("num"), uint(5))])),
            ("variant-text", map(&[(text("text"), text("t"))])),
            (
                "variant-inner",
                map(&[(text("inner"), record(text("blue")))]),
            ),
            ("variant-maybe-null", map(&[(text("maybe"), vec![NULL])])),
            ("variant-maybe-7", map(&[(text("maybe"), uint(7))])),
            ("variant-unknown", map(&[(text("circle"), uint(1))])),
            (
                "variant-two-keys",
                map(&[(text("num"), uint(1)), (text("text"), text("t"))]),
            ),
            ("enum-green", text("green")),
            ("enum-unknown", text("purple")),
            ("option-option-some-none", array(&[vec![NULL]])),
            ("option-option-some-some", array(&[array(&[uint(5)])])),
            ("option-option-bare-5", uint(5)),
            (
                "option-option-two-elements",
                array(&[vec![NULL], vec![NULL]]),
            ),
            ("result-ok", map(&[(text("ok"), text("x"))])),
            ("result-err", map(&[(text("err"), uint(1))])),
            ("result-err-text", map(&[(text("err"), text("e"))])),
            ("result-ok-null", map(&[(text("ok"), vec![NULL])])),
            ("result-bare-ok", text("ok")),
            ("result-bare-err", text("err")),
            ("result-maybe", map(&[(text("maybe"), uint(1))])),
            ("flags", array(&[text("read"), text("exec")])),
            ("flags-repeated", array(&[text("read"), text("read")])),
            ("flags-unknown", array(&[text("fly")])),
            ("flags-empty", array(&[])),
            (
                "list-of-records",
                array(&[record(vec![NULL]), record(text("red"))]),
            ),
            (
                "list-of-option-options",
                array(&[vec![NULL], array(&[vec![NULL]]), array(&[uint(3)])]),
            ),
            (
                "nested",
                array(&[array(&[
                    map(&[(text("num"), uint(1))]),
                    array(&[
                        map(&[(text("ok"), uint(1))]),
                        map(&[(text("err"), text("red"))]),
                    ]),
                ])]),
            ),
            ("tag-around-uint", tag(1, &uint(5))),
            ("bignum", tag(2, &bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0]))),
            (
                "indefinite-text",
                cat(&[&[0x7f], &text("a"), &text("b"), &[BREAK]]),
            ),
            ("indefinite-bytes", cat(&[&[0x5f], &bytes(&[1]), &[BREAK]])),
            ("indefinite-array", cat(&[&[0x9f], &uint(1), &[BREAK]])),
            ("deep-64", cat(&[&repeat(&[0x81], 63), &[0x00]])),
        ]
    }
}
