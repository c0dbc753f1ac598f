//! Input patterns: a deliberately small regular-expression subset.
//!
//! The workspace has no `regex` crate, and a full regex would not help
//! anyway: what we must prove about a pattern is that *no* value it admits
//! can change the structure of the URL it is substituted into. With this
//! grammar that is a static check on character sets: every character a
//! pattern can admit must be an RFC 3986 *unreserved* character
//! (`A-Z a-z 0-9 - . _ ~`). Those are never percent-encoded by any URL
//! parser, and they exclude `/ ? # @ :` (path, query, fragment, userinfo and
//! port delimiters), `%` (pre-encoded bytes), `\`, whitespace and anything
//! non-ASCII.
//!
//! Grammar (the whole value must match; a leading `^` and trailing `$` are
//! accepted and ignored):
//!
//! ```text
//! pattern    := atom*
//! atom       := (class | literal) quantifier?
//! class      := '[' (char | char '-' char)+ ']'      no negation
//! literal    := an unreserved character other than '.', or '\' char
//! quantifier := '?' | '*' | '+' | '{n}' | '{n,m}'
//! ```
//!
//! A bare `.` is refused rather than read as "any character": a catalog
//! author who wrote `.` almost certainly meant a host name's dot, and "any
//! character" could never pass the unreserved check.

use std::fmt;

/// Longest value any input accepts, whatever its pattern says: `*` and `+`
/// are bounded by it, and so is the matcher's work.
pub const MAX_INPUT_LEN: usize = 253;

/// A compiled input pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct InputPattern {
    source: String,
    atoms: Vec<Atom>,
}

#[derive(Clone, PartialEq, Eq)]
struct Atom {
    /// Bit `c` set ⇔ ASCII character `c` is admitted.
    set: u128,
    min: usize,
    max: usize,
}

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not in the grammar.
    #[error("{0}")]
    Syntax(String),
    /// Admits a character that could alter a URL.
    #[error(
        "admits {0:?}, which is not an RFC 3986 unreserved character: inputs may only \
         hold letters, digits, '-', '.', '_' and '~', so no value can add a path, query, \
         fragment, user or port to a URL"
    )]
    UnsafeCharacter(char),
    /// Matches only the empty string.
    #[error("must require at least one character")]
    Empty,
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn bit(c: u8) -> u128 {
    1u128 << (c & 0x7f)
}

impl InputPattern {
    /// Compiles `source`, refusing anything outside the grammar or anything
    /// that could admit an unsafe character.
    pub fn compile(source: &str) -> Result<Self, PatternError> {
        let body = source.strip_prefix('^').unwrap_or(source);
        let body = body.strip_suffix('$').unwrap_or(body);
        let mut chars = body.chars().peekable();
        let mut atoms = Vec::new();
        while let Some(c) = chars.next() {
            let set = match c {
                '[' => class(&mut chars)?,
                '\\' => {
                    let Some(e) = chars.next() else {
                        return Err(PatternError::Syntax("ends with a lone '\\'".into()));
                    };
                    single(e)?
                }
                '.' => {
                    return Err(PatternError::Syntax(
                        "a bare '.' is not supported; write '\\.' for a literal dot".into(),
                    ));
                }
                '(' | ')' | '|' | '^' | '$' | '*' | '+' | '?' | '{' | '}' | ']' => {
                    return Err(PatternError::Syntax(format!(
                        "{c:?} is not supported here (no groups, alternation or anchors \
                         inside the pattern)"
                    )));
                }
                other => single(other)?,
            };
            let (min, max) = quantifier(&mut chars)?;
            atoms.push(Atom { set, min, max });
        }
        let longest: usize = atoms.iter().map(|a| a.max).sum();
        if longest == 0 {
            return Err(PatternError::Empty);
        }
        Ok(Self {
            source: source.to_owned(),
            atoms,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches. Runs in O(len² × atoms) over at
    /// most [`MAX_INPUT_LEN`] bytes: position sets instead of backtracking,
    /// so no pattern can be made to blow up.
    pub fn is_match(&self, value: &str) -> bool {
        let bytes = value.as_bytes();
        let n = bytes.len();
        if n == 0 || n > MAX_INPUT_LEN || !bytes.iter().all(|b| b.is_ascii()) {
            return false;
        }
        let mut reachable = vec![false; n + 1];
        reachable[0] = true;
        for atom in &self.atoms {
            let mut next = vec![false; n + 1];
            for start in (0..=n).filter(|&i| reachable[i]) {
                if atom.min == 0 {
                    next[start] = true;
                }
                let mut taken = 0;
                while taken < atom.max
                    && start + taken < n
                    && atom.set & bit(bytes[start + taken]) != 0
                {
                    taken += 1;
                    if taken >= atom.min {
                        next[start + taken] = true;
                    }
                }
            }
            reachable = next;
        }
        reachable[n]
    }
}

impl fmt::Debug for InputPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputPattern({:?})", self.source)
    }
}

fn single(c: char) -> Result<u128, PatternError> {
    match u8::try_from(c) {
        Ok(b) if unreserved(b) => Ok(bit(b)),
        _ => Err(PatternError::UnsafeCharacter(c)),
    }
}

fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<u128, PatternError> {
    let mut set = 0u128;
    let mut prev: Option<char> = None;
    loop {
        let Some(c) = chars.next() else {
            return Err(PatternError::Syntax("'[' without a closing ']'".into()));
        };
        match c {
            ']' if set == 0 => return Err(PatternError::Syntax("empty class '[]'".into())),
            ']' => return Ok(set),
            '^' if set == 0 && prev.is_none() => {
                // A negated class admits everything else, '/' included.
                return Err(PatternError::Syntax(
                    "negated classes '[^…]' are not supported".into(),
                ));
            }
            '-' if prev.is_some() && chars.peek().is_some_and(|n| *n != ']') => {
                let lo = prev.take().unwrap_or('-');
                let Some(mut hi) = chars.next() else {
                    return Err(PatternError::Syntax("'[' without a closing ']'".into()));
                };
                if hi == '\\' {
                    hi = chars
                        .next()
                        .ok_or_else(|| PatternError::Syntax("ends with a lone '\\'".into()))?;
                }
                if hi < lo {
                    return Err(PatternError::Syntax(format!("range {lo}-{hi} is reversed")));
                }
                for c in lo..=hi {
                    set |= single(c)?;
                }
            }
            '\\' => {
                let e = chars
                    .next()
                    .ok_or_else(|| PatternError::Syntax("ends with a lone '\\'".into()))?;
                set |= single(e)?;
                prev = Some(e);
            }
            other => {
                set |= single(other)?;
                prev = Some(other);
            }
        }
    }
}

fn quantifier(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<(usize, usize), PatternError> {
    let bounds = match chars.peek() {
        Some('?') => (0, 1),
        Some('*') => (0, MAX_INPUT_LEN),
        Some('+') => (1, MAX_INPUT_LEN),
        Some('{') => {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) if c.is_ascii_digit() || c == ',' => text.push(c),
                    _ => return Err(PatternError::Syntax("malformed '{n,m}' quantifier".into())),
                }
            }
            let number = |s: &str| {
                s.parse::<usize>()
                    .map_err(|_| PatternError::Syntax("malformed '{n,m}' quantifier".into()))
            };
            let (min, max) = match text.split_once(',') {
                None => {
                    let n = number(&text)?;
                    (n, n)
                }
                Some((lo, hi)) => (number(lo)?, number(hi)?),
            };
            if min > max || max > MAX_INPUT_LEN {
                return Err(PatternError::Syntax(format!(
                    "quantifier {{{text}}} must have min <= max <= {MAX_INPUT_LEN}"
                )));
            }
            return Ok((min, max));
        }
        _ => return Ok((1, 1)),
    };
    chars.next();
    Ok(bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_values() {
        let p =
            InputPattern::compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,200}\.salesforce\.com$").unwrap();
        assert!(p.is_match("acme.my.salesforce.com"));
        assert!(p.is_match("login.salesforce.com"));
        assert!(p.is_match("acme--dev.sandbox.my.salesforce.com"));
        assert!(!p.is_match("salesforce.com"));
        assert!(!p.is_match("evil.com"));
        assert!(!p.is_match("acme.salesforce.com.evil.com"));
        assert!(!p.is_match("acme.salesforce.com/x"));
        assert!(!p.is_match(""));

        let guid =
            InputPattern::compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
                .unwrap();
        assert!(guid.is_match("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!guid.is_match("72f988bf-86f1-41af-91ab-2d7cd011db4"));

        let opt = InputPattern::compile("ab?c*d+").unwrap();
        for ok in ["ad", "abd", "acccdd", "abcd"] {
            assert!(opt.is_match(ok), "{ok}");
        }
        for bad in ["a", "abbd", "abc", "ab"] {
            assert!(!opt.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn refuses_unsafe_or_unsupported_patterns() {
        for (pattern, why) in [
            ("[a-z/]+", "'/'"),
            ("[a-z]+\\?", "'?'"),
            ("a#", "'#'"),
            ("[a-z@]+", "'@'"),
            ("[a-z:]+", "':'"),
            ("[a-z%]+", "'%'"),
            ("[ -~]+", "' '"),
            ("[a-zé]+", "'é'"),
        ] {
            let err = InputPattern::compile(pattern).unwrap_err();
            assert!(
                matches!(err, PatternError::UnsafeCharacter(_)),
                "{pattern}: {err}"
            );
            assert!(err.to_string().contains(why), "{pattern}: {err}");
        }
        for pattern in [
            ".+", "(a|b)", "[^/]+", "[a-z", "a{2", "a{3,1}", "a{1,999}", "[]", "\\", "", "a{0}",
        ] {
            assert!(InputPattern::compile(pattern).is_err(), "{pattern:?}");
        }
    }

    #[test]
    fn bounds_values() {
        let p = InputPattern::compile("[a-z]+").unwrap();
        assert!(p.is_match(&"a".repeat(MAX_INPUT_LEN)));
        assert!(!p.is_match(&"a".repeat(MAX_INPUT_LEN + 1)));
        assert!(!p.is_match("ab\u{e9}"));
    }
}
