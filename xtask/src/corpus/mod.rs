//! `cargo xtask corpus`: the malformed-frame corpus of `tests/corpus/`, raw
//! bytes a client sends to a host, written by hand as CBOR so that every byte
//! is deliberate; and, on request, seeds for the fuzz targets.
//!
//! Unless a file's name starts with `prehello-`, its bytes are sent after a
//! valid `hello` exchange. Files whose name (after `prehello-`) starts with
//! `split-1byte-` are sent one byte per write.

mod cbor;
mod damage;
mod encoding;
mod field;
mod message;
mod session;
mod stream;
mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, bail};

use message::MAX_FRAME;

/// `cargo xtask corpus [--out DIR] [--seed-fuzz]`.
pub fn command(args: &[String]) -> anyhow::Result<()> {
    let mut out = xtask::root().join("tests/corpus");
    let mut seed_fuzz = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().context("--out needs a folder")?),
            "--seed-fuzz" => seed_fuzz = true,
            other => bail!("unknown argument `{other}` to `corpus`"),
        }
    }
    let corpus = generate();
    std::fs::create_dir_all(&out)?;
    // Remove files of earlier runs so that the folder is exactly the corpus.
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "bin") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut counts: BTreeMap<&str, usize> = Default::default();
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
fn seed_fuzz_corpora(corpus: &[File]) -> anyhow::Result<()> {
    let fuzz = xtask::root().join("fuzz/corpus");
    let envelope = fuzz.join("envelope");
    let values = fuzz.join("cbor_to_val");
    let frames = fuzz.join("frame_decoder");
    for dir in [&envelope, &values, &frames] {
        std::fs::create_dir_all(dir)?;
    }
    let mut bodies = BTreeSet::new();
    for file in corpus {
        bodies.extend(complete_bodies(&file.bytes));
    }
    for (i, body) in bodies.iter().enumerate() {
        std::fs::write(envelope.join(format!("body-{i:04}")), body)?;
        std::fs::write(values.join(format!("body-{i:04}")), body)?;
    }
    let value_seeds = value::seeds();
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

/// One corpus file.
struct File {
    category: &'static str,
    name: String,
    bytes: Vec<u8>,
}

/// The files generated so far, each checked by [`Corpus::add`]: a plain
/// name, not taken before, and some bytes.
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
fn generate() -> Vec<File> {
    message::check_reference_frames();
    let mut c = Corpus {
        files: Vec::new(),
        names: BTreeSet::new(),
    };
    damage::truncations(&mut c);
    damage::bit_flips(&mut c);
    field::major_types(&mut c);
    field::keys(&mut c);
    encoding::reserved_encodings(&mut c);
    encoding::indefinite_lengths(&mut c);
    encoding::lying_lengths(&mut c);
    encoding::nesting(&mut c);
    stream::length_prefixes(&mut c);
    stream::splits_and_batches(&mut c);
    session::messages_out_of_place(&mut c);
    field::envelopes_and_scalars(&mut c);
    session::before_hello(&mut c);
    c.files.sort_by(|a, b| a.name.cmp(&b.name));
    c.files
}

/// The complete frame bodies at the start of a byte stream (up to the
/// first incomplete or oversized frame).
fn complete_bodies(stream: &[u8]) -> Vec<Vec<u8>> {
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
