//! Routing by a key taken from the call: the `[keys]` table of
//! `regions.toml`.
//!
//! ```toml
//! [keys]
//! "ledger.*" = "args[0]"                       # the first argument
//! "orders.place" = "args[1].customer.id"       # a field of a record argument
//! "cache.*" = { key = "metadata.tenant", pin = { "eu-*" = ["eu-west"] } }
//! ```
//!
//! A rule names, for a function pattern, where the call's key is: an
//! argument by position, a path into it (record fields by their WIT names,
//! list and tuple elements by index), or a metadata entry. The key then
//! orders the hosts that serve the function by rendezvous hashing (highest
//! random weight): each host's weight for a key is
//! `XXH3-64(key, seed = XXH3-64(host address))`, the heaviest host owns the
//! key, and the others follow by weight. Every host computes the same order
//! from the same file, so a key reaches the same host from anywhere; a host
//! that joins or leaves moves only the keys it gains or owned (about 1/n of
//! them), and when the owner is down the key's next host takes it until
//! the owner is back.
//!
//! A rule may **pin** keys to regions: the key's text is matched against
//! the pin's patterns (exact, or a prefix ending in `*`; the most specific
//! wins) and the hosts of the regions it names come first, in that order,
//! each region's hosts by weight; every other host follows by weight, for
//! failover.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

use ciborium::Value;
use twox_hash::XxHash3_64;

use crate::pattern::Pattern;
use crate::service::CallRequest;

/// Where a call's key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Argument `index` (from 0), then `path` into it.
    Arg { index: usize, path: Vec<Step> },
    /// The metadata entry `name`.
    Metadata(String),
}

/// One step into an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A record field, by its WIT name (`.customer`).
    Field(String),
    /// A list or tuple element, from 0 (`[2]`).
    Index(usize),
}

/// Why a key source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a key: write `args[N]` (argument N, from 0), `args[N].field` (a record field; \
     `.` again for a nested one, `[M]` for a list element) or `metadata.NAME` (a metadata entry)"
)]
pub struct BadKey(pub String);

impl KeySource {
    /// Parses `args[0]`, `args[1].customer.id`, `args[0][2]`,
    /// `metadata.tenant`.
    ///
    /// # Errors
    ///
    /// [`BadKey`] naming the text.
    pub fn parse(text: &str) -> Result<KeySource, BadKey> {
        let bad = || BadKey(text.to_owned());
        if let Some(name) = text.strip_prefix("metadata.") {
            if name.is_empty() {
                return Err(bad());
            }
            return Ok(KeySource::Metadata(name.to_owned()));
        }
        let rest = text.strip_prefix("args[").ok_or_else(bad)?;
        let (index, mut rest) = rest.split_once(']').ok_or_else(bad)?;
        let index = parse_index(index).ok_or_else(bad)?;
        let mut path = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let (number, after) = after.split_once(']').ok_or_else(bad)?;
                path.push(Step::Index(parse_index(number).ok_or_else(bad)?));
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(bad());
                }
                path.push(Step::Field(name.to_owned()));
                rest = &after[end..];
            } else {
                return Err(bad());
            }
        }
        Ok(KeySource::Arg { index, path })
    }

    /// The key of `request`, as the bytes that are hashed: text as its
    /// UTF-8 bytes, integers in decimal (so `42` and `"42"` are one key),
    /// byte strings as they are, booleans as `true`/`false`, anything else
    /// as its CBOR encoding. `None` when the call has no such argument,
    /// field, element or metadata entry.
    pub fn key_of<'r>(&self, request: &'r CallRequest) -> Option<Cow<'r, [u8]>> {
        match self {
            KeySource::Metadata(name) => request
                .context
                .metadata
                .get(name)
                .map(|v| Cow::Borrowed(v.as_bytes())),
            KeySource::Arg { index, path } => {
                let mut value = request.args.get(*index)?;
                for step in path {
                    value = match (step, value) {
                        (Step::Field(name), Value::Map(entries)) => entries
                            .iter()
                            .find(|(k, _)| matches!(k, Value::Text(k) if k == name))
                            .map(|(_, v)| v)?,
                        (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                        _ => return None,
                    };
                }
                Some(key_bytes(value))
            }
        }
    }
}

fn parse_index(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn key_bytes(value: &Value) -> Cow<'_, [u8]> {
    match value {
        Value::Text(text) => Cow::Borrowed(text.as_bytes()),
        Value::Bytes(bytes) => Cow::Borrowed(bytes),
        Value::Integer(n) => Cow::Owned(i128::from(*n).to_string().into_bytes()),
        Value::Bool(b) => Cow::Borrowed(if *b { b"true" } else { b"false" }),
        other => {
            let mut out = Vec::new();
            ciborium::into_writer(other, &mut out).expect("a value encodes into memory");
            Cow::Owned(out)
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Metadata(name) => write!(f, "metadata.{name}"),
            KeySource::Arg { index, path } => {
                write!(f, "args[{index}]")?;
                for step in path {
                    match step {
                        Step::Field(name) => write!(f, ".{name}")?,
                        Step::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A key pattern of a pin: `*`, an exact key, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern(String);

impl KeyPattern {
    /// How specifically the pattern matches `key`: an exact match beats
    /// any prefix, a longer prefix a shorter one.
    fn specificity(&self, key: &[u8]) -> Option<usize> {
        match self.0.strip_suffix('*') {
            Some(prefix) if key.starts_with(prefix.as_bytes()) => Some(prefix.len()),
            None if self.0.as_bytes() == key => Some(usize::MAX),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One rule of `[keys]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRule {
    /// The functions it applies to.
    pub functions: Pattern,
    /// Where their key is.
    pub key: KeySource,
    /// Key patterns pinned to regions, in the file's order.
    pub pins: Vec<(KeyPattern, Vec<String>)>,
}

/// A `[keys]` entry as the file writes it: a key source alone, or a table
/// with `key` and `pin`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum RawKeyRule {
    Key(String),
    Table(RawKeyTable),
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeyTable {
    key: String,
    #[serde(default)]
    pin: BTreeMap<String, Vec<String>>,
}

impl TryFrom<toml::Value> for RawKeyRule {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        match value {
            toml::Value::String(key) => Ok(RawKeyRule::Key(key)),
            toml::Value::Table(table) => table
                .try_into()
                .map(RawKeyRule::Table)
                .map_err(|e| e.to_string().trim_end().to_owned()),
            other => Err(format!(
                "a key rule is a key (\"args[0]\") or a table {{ key = \"args[0]\", pin = \
                 {{ \"eu-*\" = [\"eu-west\"] }} }}, not a {}",
                other.type_str()
            )),
        }
    }
}

impl KeyRule {
    /// The rule `"pattern" = raw`; regions are checked by the caller.
    ///
    /// # Errors
    ///
    /// What is wrong with the pattern, the key or a pin, in words.
    pub fn parse(pattern: &str, raw: &RawKeyRule) -> Result<KeyRule, String> {
        let functions = Pattern::parse(pattern).map_err(|e| e.to_string())?;
        let (key, pins) = match raw {
            RawKeyRule::Key(key) => (key, None),
            RawKeyRule::Table(table) => (&table.key, Some(&table.pin)),
        };
        let key = KeySource::parse(key).map_err(|e| e.to_string())?;
        let mut parsed = Vec::new();
        for (keys, regions) in pins.into_iter().flatten() {
            let star = keys.find('*');
            if keys.is_empty() || star.is_some_and(|i| i != keys.len() - 1) {
                return Err(format!(
                    "pin `{keys}`: a key pattern is `*`, a key, or a prefix ending in `*`"
                ));
            }
            if regions.is_empty() {
                return Err(format!("pin `{keys}`: name at least one region"));
            }
            parsed.push((KeyPattern(keys.clone()), regions.clone()));
        }
        Ok(KeyRule {
            functions,
            key,
            pins: parsed,
        })
    }

    /// The regions `key` is pinned to, in order, if a pin matches it.
    pub fn pinned(&self, key: &[u8]) -> Option<&[String]> {
        self.pins
            .iter()
            .filter_map(|(pattern, regions)| Some((pattern.specificity(key)?, regions)))
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, regions)| regions.as_slice())
    }
}

/// The `[keys]` rules in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    rules: Vec<KeyRule>,
}

impl Keys {
    pub fn new(rules: Vec<KeyRule>) -> Keys {
        Keys { rules }
    }

    pub fn rules(&self) -> &[KeyRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule for `function`: the most specific pattern that matches it
    /// (its own name, then the longest prefix, then `*`).
    pub fn rule_for(&self, function: &str) -> Option<&KeyRule> {
        self.rules
            .iter()
            .filter_map(|rule| Some((rule.functions.specificity(function)?, rule)))
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, rule)| rule)
    }

    /// The key of `request` under its function's rule, and the regions the
    /// key is pinned to; `None` when no rule applies or the call has no
    /// such key (it is then routed like any other call).
    pub fn keyed(&self, request: &CallRequest) -> Option<Keyed> {
        let rule = self.rule_for(&request.function)?;
        let key = rule.key.key_of(request)?;
        let pinned = rule.pinned(&key).map(<[String]>::to_vec);
        Some(Keyed {
            key: key.into_owned(),
            pinned,
        })
    }
}

/// A call's key, with the regions it is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub key: Vec<u8>,
    pub pinned: Option<Vec<String>>,
}

/// Where a host stands for a key; lower comes first: pinned regions in
/// their order (any other region after them), then the heavier weight,
/// then the address (two hosts never tie in practice).
pub type KeyRank = (usize, Reverse<u64>);

impl Keyed {
    /// The rank of the host listening on `addr` in `region`.
    pub fn rank(&self, addr: &str, region: &str) -> KeyRank {
        let pin = self
            .pinned
            .as_ref()
            .and_then(|regions| regions.iter().position(|r| r == region))
            .unwrap_or(usize::MAX);
        (pin, Reverse(weight(addr, &self.key)))
    }
}

/// The rendezvous weight of the host listening on `addr` (as
/// `regions.toml` writes it) for `key`:
/// `XXH3-64(key, seed = XXH3-64(addr))`.
pub fn weight(addr: &str, key: &[u8]) -> u64 {
    XxHash3_64::oneshot_with_seed(XxHash3_64::oneshot(addr.as_bytes()), key)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(args: Vec<Value>) -> CallRequest {
        CallRequest::new("ledger.record", args, Duration::from_secs(1))
    }

    fn key(source: &str, request: &CallRequest) -> Option<Vec<u8>> {
        KeySource::parse(source)
            .unwrap()
            .key_of(request)
            .map(Cow::into_owned)
    }

    #[test]
    fn key_sources_parse_and_print_back() {
        for text in [
            "args[0]",
            "args[12]",
            "args[1].customer",
            "args[1].customer.id",
            "args[0][2]",
            "args[0].lines[3].sku",
            "metadata.tenant",
            "metadata.x-tenant.id",
        ] {
            assert_eq!(KeySource::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            KeySource::parse("args[1].customer.id").unwrap(),
            KeySource::Arg {
                index: 1,
                path: vec![Step::Field("customer".into()), Step::Field("id".into())]
            }
        );
        for bad in [
            "",
            "args",
            "args[]",
            "args[x]",
            "args[-1]",
            "args[0",
            "args[0].",
            "args[0]..a",
            "args[0]x",
            "args[0][]",
            "arg[0]",
            "metadata.",
            "tenant",
        ] {
            assert_eq!(KeySource::parse(bad), Err(BadKey(bad.into())), "{bad}");
        }
        assert_eq!(
            BadKey("args[x]".into()).to_string(),
            "`args[x]` is not a key: write `args[N]` (argument N, from 0), `args[N].field` (a \
             record field; `.` again for a nested one, `[M]` for a list element) or \
             `metadata.NAME` (a metadata entry)"
        );
    }

    #[test]
    fn keys_are_read_from_arguments_fields_elements_and_metadata() {
        let order = Value::Map(vec![
            (
                Value::Text("customer".into()),
                Value::Map(vec![(Value::Text("id".into()), Value::Text("ada".into()))]),
            ),
            (
                Value::Text("lines".into()),
                Value::Array(vec![Value::Integer(7.into()), Value::Integer((-3).into())]),
            ),
        ]);
        let mut call = request(vec![Value::Text("sku-1".into()), order]);
        call.context
            .metadata
            .insert("tenant".into(), "eu-acme".into());
        assert_eq!(key("args[0]", &call).unwrap(), b"sku-1");
        assert_eq!(key("args[1].customer.id", &call).unwrap(), b"ada");
        assert_eq!(key("args[1].lines[1]", &call).unwrap(), b"-3");
        assert_eq!(key("metadata.tenant", &call).unwrap(), b"eu-acme");
        // Absent: no such argument, field, element, entry, or not a container.
        for source in [
            "args[2]",
            "args[1].customer.name",
            "args[1].lines[2]",
            "args[0].id",
            "args[1][0]",
            "metadata.region",
        ] {
            assert_eq!(key(source, &call), None, "{source}");
        }
        // Integers hash as their decimal text; bytes as they are; the rest
        // as CBOR.
        let call = request(vec![
            Value::Integer(42.into()),
            Value::Bytes(vec![1, 2]),
            Value::Bool(true),
            Value::Array(vec![Value::Integer(1.into())]),
        ]);
        assert_eq!(key("args[0]", &call).unwrap(), b"42");
        assert_eq!(key("args[1]", &call).unwrap(), [1, 2]);
        assert_eq!(key("args[2]", &call).unwrap(), b"true");
        assert_eq!(key("args[3]", &call).unwrap(), [0x81, 0x01]);
    }

    #[test]
    fn the_weight_is_xxh3_of_the_key_seeded_with_xxh3_of_the_address() {
        // Fixed values: every host, of every version, must agree on them.
        assert_eq!(XxHash3_64::oneshot(b""), 0x2d06_8005_38d3_94c2);
        let seed = XxHash3_64::oneshot(b"127.0.0.1:7201");
        assert_eq!(
            weight("127.0.0.1:7201", b"ada"),
            XxHash3_64::oneshot_with_seed(seed, b"ada")
        );
        assert_ne!(
            weight("127.0.0.1:7201", b"ada"),
            weight("127.0.0.1:7202", b"ada")
        );
    }

    #[test]
    fn rendezvous_spreads_keys_evenly_and_a_leaving_host_moves_only_its_own() {
        let hosts = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"];
        let owner = |hosts: &[&str], key: &[u8]| -> usize {
            let keyed = Keyed {
                key: key.to_vec(),
                pinned: None,
            };
            (0..hosts.len())
                .min_by_key(|&i| keyed.rank(hosts[i], "r"))
                .unwrap()
        };
        let mut counts = [0; 3];
        let mut moved = 0;
        for n in 0..10_000 {
            let key = format!("key-{n}");
            let before = owner(&hosts, key.as_bytes());
            counts[before] += 1;
            let after = owner(&hosts[..2], key.as_bytes());
            if before != after {
                // Only the keys of the host that left move.
                assert_eq!(before, 2);
                moved += 1;
            }
        }
        for count in counts {
            assert!((3_000..=3_667).contains(&count), "{counts:?}");
        }
        assert_eq!(moved, counts[2]);
    }

    #[test]
    fn rules_match_the_most_specific_pattern_and_pins_the_most_specific_key_pattern() {
        let raw = RawKeyRule::Table(RawKeyTable {
            key: "metadata.tenant".into(),
            pin: BTreeMap::from([
                ("eu-*".to_owned(), vec!["eu-west".to_owned()]),
                (
                    "eu-big".to_owned(),
                    vec!["us-east".to_owned(), "eu-west".to_owned()],
                ),
                ("*".to_owned(), vec!["ap-south".to_owned()]),
            ]),
        });
        let tenants = KeyRule::parse("cache.*", &raw).unwrap();
        let all = KeyRule::parse("*", &RawKeyRule::Key("args[0]".into())).unwrap();
        let own = KeyRule::parse("cache.get", &RawKeyRule::Key("args[1]".into())).unwrap();
        let keys = Keys::new(vec![all.clone(), tenants.clone(), own.clone()]);
        assert_eq!(keys.rule_for("cache.get"), Some(&own));
        assert_eq!(keys.rule_for("cache.put"), Some(&tenants));
        assert_eq!(keys.rule_for("math.add"), Some(&all));
        assert_eq!(
            tenants.pinned(b"eu-acme"),
            Some(&["eu-west".to_owned()][..])
        );
        assert_eq!(
            tenants.pinned(b"eu-big"),
            Some(&["us-east".to_owned(), "eu-west".to_owned()][..])
        );
        assert_eq!(
            tenants.pinned(b"us-acme"),
            Some(&["ap-south".to_owned()][..])
        );
        assert_eq!(all.pinned(b"x"), None);

        // Pinned regions come first, in order, whatever the weight.
        let keyed = Keyed {
            key: b"eu-big".to_vec(),
            pinned: tenants.pinned(b"eu-big").map(<[String]>::to_vec),
        };
        assert_eq!(keyed.rank("a:1", "us-east").0, 0);
        assert_eq!(keyed.rank("a:1", "eu-west").0, 1);
        assert_eq!(keyed.rank("a:1", "ap-south").0, usize::MAX);
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let table = |key: &str, pin: &[(&str, &[&str])]| {
            RawKeyRule::Table(RawKeyTable {
                key: key.into(),
                pin: pin
                    .iter()
                    .map(|(k, r)| (k.to_string(), r.iter().map(|s| s.to_string()).collect()))
                    .collect(),
            })
        };
        assert_eq!(
            KeyRule::parse("a*b", &RawKeyRule::Key("args[0]".into())).unwrap_err(),
            "`a*b` is not a function pattern: write `*`, a function name, or a prefix ending in `*`"
        );
        assert!(
            KeyRule::parse("a.*", &RawKeyRule::Key("arg0".into()))
                .unwrap_err()
                .starts_with("`arg0` is not a key")
        );
        assert_eq!(
            KeyRule::parse("a.*", &table("args[0]", &[("e*u", &["eu"])])).unwrap_err(),
            "pin `e*u`: a key pattern is `*`, a key, or a prefix ending in `*`"
        );
        assert_eq!(
            KeyRule::parse("a.*", &table("args[0]", &[("eu-*", &[])])).unwrap_err(),
            "pin `eu-*`: name at least one region"
        );
    }
}
