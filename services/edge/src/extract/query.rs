//! Query strings, read pair by pair so every error names its parameter.
//!
//! A general deserializer (serde_urlencoded) reports only "the query" and
//! Rust type names; the edge's query parameters are few and flat, so each
//! query type lists its parameters and reads them with the typed getters here.

use locksmith_errors::FieldViolation;

use crate::problem::GIVEN_TWICE;

/// A query type: the parameters a route accepts, and how to read them.
pub trait FromQuery: Sized {
    /// Every parameter the route accepts; any other is refused by name.
    const PARAMETERS: &'static [&'static str];

    /// Reads the parameters. `params` holds only names from
    /// [`Self::PARAMETERS`], each at most once.
    fn from_query(params: &QueryParams) -> Result<Self, Vec<FieldViolation>>;
}

/// The decoded parameters of one query string.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Reads `query` (without the `?`) as a `T`, reporting every unknown,
    /// repeated or malformed parameter at once.
    pub fn read<T: FromQuery>(query: &str) -> Result<T, Vec<FieldViolation>> {
        let mut params = QueryParams::default();
        let mut errors = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !T::PARAMETERS.contains(&name.as_ref()) {
                errors.push(unknown(&name));
            } else if params.pairs.iter().any(|(n, _)| *n == name) {
                // Which of two values was meant is a guess the edge does not make.
                if !errors.iter().any(|e: &FieldViolation| e.field == name) {
                    errors.push(violation(&name, GIVEN_TWICE));
                }
            } else {
                params.pairs.push((name.into_owned(), value.into_owned()));
            }
        }
        match T::from_query(&params) {
            Ok(value) if errors.is_empty() => Ok(value),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// The value of `name`; an empty value counts as absent, as it does for
    /// the services (an empty `page_token` is the first page).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name` as a whole number in `min..=max`, if given.
    /// Only ASCII digits are accepted: no sign, space or exponent.
    pub fn whole_number<N>(
        &self,
        name: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<N>, FieldViolation>
    where
        N: TryFrom<u64>,
    {
        let Some((_, raw)) = self.pairs.iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        let out_of_range =
            || violation(name, format!("must be a whole number from {min} to {max}"));
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(out_of_range());
        }
        raw.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| N::try_from(n).ok())
            .map(Some)
            .ok_or_else(out_of_range)
    }
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

fn unknown(name: &str) -> FieldViolation {
    if name.is_empty() {
        return violation("query", "has a parameter without a name");
    }
    violation(
        &crate::problem::printable(name),
        "is not a parameter of this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Q {
        n: Option<u32>,
        t: Option<String>,
    }

    impl FromQuery for Q {
        const PARAMETERS: &'static [&'static str] = &["n", "t"];
        fn from_query(params: &QueryParams) -> Result<Self, Vec<FieldViolation>> {
            let n = params.whole_number("n", 1, 10).map_err(|e| vec![e])?;
            let t = params.text("t").map(str::to_owned);
            Ok(Q { n, t })
        }
    }

    fn fields(query: &str) -> Vec<(String, String)> {
        QueryParams::read::<Q>(query)
            .unwrap_err()
            .into_iter()
            .map(|v| (v.field, v.description))
            .collect()
    }

    #[test]
    fn reads_known_parameters_and_decodes_them() {
        assert_eq!(
            QueryParams::read::<Q>("n=10&t=a%2Bb+c").unwrap(),
            Q {
                n: Some(10),
                t: Some("a+b c".into())
            }
        );
        assert_eq!(
            QueryParams::read::<Q>("t=").unwrap(),
            Q { n: None, t: None }
        );
    }

    #[test]
    fn names_every_bad_parameter() {
        let range = "must be a whole number from 1 to 10".to_owned();
        for bad in [
            "n=0",
            "n=11",
            "n=-1",
            "n=%2B1",
            "n=1e1",
            "n=",
            "n",
            "n=99999999999999999999",
        ] {
            assert_eq!(fields(bad), [("n".to_owned(), range.clone())], "{bad}");
        }
        assert_eq!(
            fields("n=1&n=1&n=2"),
            [("n".to_owned(), "is given twice".to_owned())]
        );
        assert_eq!(
            fields("colour=red&=x&n=x"),
            [
                (
                    "colour".to_owned(),
                    "is not a parameter of this route".to_owned()
                ),
                (
                    "query".to_owned(),
                    "has a parameter without a name".to_owned()
                ),
                ("n".to_owned(), range),
            ]
        );
    }
}
