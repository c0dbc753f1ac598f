//! Per-connection inputs and the URL templates they are substituted into
//! (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
//!
//! Substitution inserts each value verbatim. That is safe only because an
//! input's pattern can admit nothing but RFC 3986 unreserved characters
//! (see `pattern.rs`) and every value is matched against its pattern here,
//! at the moment of use: so nothing is ever percent-encoded, and no value
//! can move the URL to another host, port, user, path, query or fragment
//! than the template's author wrote. The result is then parsed and must
//! still be an `https` URL with a host.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Url;

use super::pattern::InputPattern;

/// One declared per-connection input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) pattern: InputPattern,
    pub(crate) example: String,
    pub(crate) default: Option<String>,
}

impl InputSpec {
    /// The input's name, as used in `{name}` placeholders.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the user should enter.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The pattern every value must match in full.
    pub fn pattern(&self) -> &InputPattern {
        &self.pattern
    }
    /// A value that matches.
    pub fn example(&self) -> &str {
        &self.example
    }
    /// The value used when a connection gives none; `None` → required.
    pub fn default(&self) -> Option<&str> {
        self.default.as_deref()
    }
}

/// Why a connection's inputs, or a substitution, were refused. Values are
/// never repeated: they come from callers and may be anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The provider declares no input of that name.
    #[error("inputs.{0}: is not an input of this provider")]
    Unknown(String),
    /// A required input is missing.
    #[error("inputs.{0}: is required")]
    Missing(String),
    /// A value does not match the input's pattern.
    #[error("inputs.{name}: must match {pattern}")]
    NoMatch {
        /// The input.
        name: String,
        /// Its pattern, as written in the catalog.
        pattern: String,
    },
    /// The substituted URL is not an https URL with a host.
    #[error("the URL built from the inputs is not a valid https URL: {0}")]
    BadUrl(String),
}

/// A connection's input values, checked against a provider's declared
/// inputs, defaults filled in. Built by [`super::Provider::resolve_inputs`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectionInputs(BTreeMap<String, String>);

impl ConnectionInputs {
    /// No inputs (providers without inputs).
    pub fn none() -> Self {
        Self::default()
    }

    /// The values by name, to store with the connection.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// One value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl fmt::Debug for ConnectionInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// Checks `given` against `specs`: no unknown names, every required input
/// present, every value matching its pattern; fills in defaults.
pub(crate) fn resolve_inputs(
    specs: &BTreeMap<String, InputSpec>,
    given: &BTreeMap<String, String>,
) -> Result<ConnectionInputs, InputError> {
    if let Some(unknown) = given.keys().find(|k| !specs.contains_key(*k)) {
        return Err(InputError::Unknown(unknown.clone()));
    }
    let mut out = BTreeMap::new();
    for (name, spec) in specs {
        let value = match (given.get(name), &spec.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => return Err(InputError::Missing(name.clone())),
        };
        if !spec.pattern.is_match(&value) {
            return Err(InputError::NoMatch {
                name: name.clone(),
                pattern: spec.pattern.as_str().to_owned(),
            });
        }
        out.insert(name.clone(), value);
    }
    Ok(ConnectionInputs(out))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Input(String),
}

/// A URL with `{input}` placeholders, checked at load.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    source: String,
    parts: Vec<Part>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Unbalanced or empty braces, or a bad placeholder name.
    #[error("{0}")]
    Syntax(String),
}

impl UrlTemplate {
    /// Splits `source` into literal text and `{name}` placeholders. Braces
    /// never appear in a valid URL otherwise, so any stray one is an error.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes().get(open) == Some(&b'}') {
                return Err(TemplateError::Syntax("'}' without a matching '{'".into()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(TemplateError::Syntax("'{' without a matching '}'".into()));
            };
            let name = &after[..close];
            if !valid_input_name(name) {
                return Err(TemplateError::Syntax(format!(
                    "placeholder {{{name}}} must be a name like {{tenant}} ([a-z][a-z0-9_]*)"
                )));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            parts.push(Part::Input(name.to_owned()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The names of its placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Input(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Substitutes `inputs`, re-checking every value used against its
    /// spec's pattern (the inputs may have been resolved for another
    /// provider, or long ago), and parses the result as an https URL.
    pub fn substitute(
        &self,
        specs: &BTreeMap<String, InputSpec>,
        inputs: &ConnectionInputs,
    ) -> Result<Url, InputError> {
        let mut text = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Literal(l) => text.push_str(l),
                Part::Input(name) => {
                    let spec = specs
                        .get(name)
                        .ok_or_else(|| InputError::Unknown(name.clone()))?;
                    let value = match (inputs.get(name), spec.default()) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d,
                        (None, None) => return Err(InputError::Missing(name.clone())),
                    };
                    if !spec.pattern.is_match(value) {
                        return Err(InputError::NoMatch {
                            name: name.clone(),
                            pattern: spec.pattern.as_str().to_owned(),
                        });
                    }
                    text.push_str(value);
                }
            }
        }
        parse_https(&text).map_err(InputError::BadUrl)
    }
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlTemplate({:?})", self.source)
    }
}

/// Input names: short lowercase identifiers, so they read well in a
/// template and as JSON keys.
pub(crate) fn valid_input_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 32
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Parses an absolute URL that must be `https`, with a host and without
/// credentials or a fragment (a fragment is never sent, and userinfo in a
/// catalog URL would be a secret in configuration).
pub(crate) fn parse_https(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    if url.scheme() != "https" {
        return Err("must be an https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, pattern: &str, example: &str, default: Option<&str>) -> InputSpec {
        InputSpec {
            name: name.into(),
            description: "d".into(),
            pattern: InputPattern::compile(pattern).unwrap(),
            example: example.into(),
            default: default.map(Into::into),
        }
    }

    fn specs() -> BTreeMap<String, InputSpec> {
        let mut m = BTreeMap::new();
        m.insert(
            "tenant".into(),
            spec(
                "tenant",
                "[A-Za-z0-9.-]{1,128}",
                "contoso.onmicrosoft.com",
                Some("common"),
            ),
        );
        m.insert("port".into(), spec("port", "[0-9]{1,5}", "443", None));
        m
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn substitutes_verbatim() {
        let t = UrlTemplate::parse("https://login.example.com:{port}/{tenant}/oauth2/v2.0/token")
            .unwrap();
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["port", "tenant"]);
        let inputs = resolve_inputs(&specs(), &given(&[("port", "8443")])).unwrap();
        assert_eq!(inputs.get("tenant"), Some("common"));
        let url = t.substitute(&specs(), &inputs).unwrap();
        assert_eq!(
            url.as_str(),
            "https://login.example.com:8443/common/oauth2/v2.0/token"
        );
        let inputs = resolve_inputs(
            &specs(),
            &given(&[("port", "443"), ("tenant", "Contoso.onmicrosoft.com")]),
        )
        .unwrap();
        let url = t.substitute(&specs(), &inputs).unwrap();
        // Nothing encoded; the default port is dropped by the URL parser.
        assert_eq!(
            url.as_str(),
            "https://login.example.com/Contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn refuses_bad_inputs() {
        let s = specs();
        for (pairs, want) in [
            (
                vec![("port", "443"), ("tenant", "a/b")],
                "inputs.tenant: must match",
            ),
            (
                vec![("port", "443"), ("tenant", "evil.com?x=")],
                "inputs.tenant: must match",
            ),
            (
                vec![("port", "443"), ("tenant", "x@evil.com")],
                "inputs.tenant: must match",
            ),
            (
                vec![("port", "443"), ("tenant", "a%2Fb")],
                "inputs.tenant: must match",
            ),
            (
                vec![("port", "443"), ("tenant", "")],
                "inputs.tenant: must match",
            ),
            (vec![("port", "443:1")], "inputs.port: must match"),
            (vec![("tenant", "x")], "inputs.port: is required"),
            (
                vec![("port", "443"), ("realm", "x")],
                "inputs.realm: is not an input",
            ),
        ] {
            let err = resolve_inputs(&s, &given(&pairs)).unwrap_err();
            assert!(err.to_string().starts_with(want), "{pairs:?}: {err}");
        }
        // Substitution re-checks values it did not resolve itself.
        let t = UrlTemplate::parse("https://{tenant}.example.com/").unwrap();
        let forged = ConnectionInputs(given(&[("tenant", "evil.com#")]));
        assert!(matches!(
            t.substitute(&s, &forged),
            Err(InputError::NoMatch { .. })
        ));
        let t = UrlTemplate::parse("https://{realm}.example.com/").unwrap();
        assert!(matches!(
            t.substitute(&s, &ConnectionInputs::none()),
            Err(InputError::Unknown(_))
        ));
    }

    #[test]
    fn parses_templates_strictly() {
        for bad in [
            "https://{}/x",
            "https://{a/x",
            "https://a}/x",
            "https://{Tenant}/",
            "https://{a-b}/",
        ] {
            assert!(UrlTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_https("http://example.com/").is_err());
        assert!(parse_https("https://user:pw@example.com/").is_err());
        assert!(parse_https("https://example.com/#x").is_err());
        assert!(parse_https("https://").is_err());
        assert!(parse_https("/relative").is_err());
        assert!(parse_https("https://example.com/a?b=c").is_ok());
    }
}
