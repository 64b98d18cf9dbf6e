//! Function patterns, as `[routes]`, access files and a plugin's `calls`
//! list write them: `*` (every function), a function's full name
//! (`math.add`), or a prefix ending in `*` (`math.*`, `inventory.stock.*`).

use std::fmt;

/// A parsed function pattern.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern(String);

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a function pattern: write `*`, a function name, or a prefix ending in `*`")]
pub struct BadPattern(pub String);

impl Pattern {
    /// Parses `text`: not empty, and `*` only as its last character.
    ///
    /// # Errors
    ///
    /// [`BadPattern`] naming the text.
    pub fn parse(text: &str) -> Result<Pattern, BadPattern> {
        let star = text.find('*');
        if text.is_empty() || star.is_some_and(|i| i != text.len() - 1) || text.contains(' ') {
            return Err(BadPattern(text.to_owned()));
        }
        Ok(Pattern(text.to_owned()))
    }

    /// How specifically the pattern matches `function`, or `None` when it
    /// does not: the function's own name beats any prefix, and a longer
    /// prefix beats a shorter one (`*` is the empty prefix).
    pub fn specificity(&self, function: &str) -> Option<usize> {
        match self.0.strip_suffix('*') {
            Some(prefix) if function.starts_with(prefix) => Some(prefix.len()),
            None if self.0 == function => Some(usize::MAX),
            _ => None,
        }
    }

    /// Whether the pattern matches `function`.
    pub fn matches(&self, function: &str) -> bool {
        self.specificity(function).is_some()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Pattern {
    type Error = BadPattern;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Pattern::parse(&text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether any of `patterns` matches `function`.
pub fn any_matches(patterns: &[Pattern], function: &str) -> bool {
    patterns.iter().any(|p| p.matches(function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_a_star_a_name_or_a_prefix() {
        let every = Pattern::parse("*").unwrap();
        let prefix = Pattern::parse("math.*").unwrap();
        let name = Pattern::parse("math.add").unwrap();
        assert_eq!(every.specificity("math.add"), Some(0));
        assert_eq!(prefix.specificity("math.add"), Some(5));
        assert_eq!(name.specificity("math.add"), Some(usize::MAX));
        assert!(!prefix.matches("mathematics.add"));
        assert!(!name.matches("math.addition"));
        assert!(prefix.matches("math.x.y"));
        for bad in ["", "*.add", "ma*th", "**", "math add"] {
            assert_eq!(Pattern::parse(bad), Err(BadPattern(bad.into())), "{bad}");
        }
    }
}
