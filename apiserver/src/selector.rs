//! Label and field selectors, as used by `?labelSelector=` and `?fieldSelector=`
//! and by workload specs (`metav1.LabelSelector`).
//!
//! Pure: works on `serde_json::Value` objects and does no I/O. The grammar,
//! validation rules, error texts and per-kind selectable fields follow
//! Kubernetes (`apimachinery/pkg/labels`, `apimachinery/pkg/fields` and the
//! field label conversion functions of each API group), so that kubectl and
//! client libraries see the same behaviour against skiff. Errors here become
//! `400 BadRequest` in the API layer.

use std::fmt;

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a selector could not be parsed or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// One requirement of a label selector string is malformed or invalid
    /// (bad key, bad value, missing parenthesis, unknown operator...).
    #[error("unable to parse requirement: {0}")]
    UnparsableRequirement(String),
    /// The label selector string is malformed between requirements
    /// (for example a trailing comma or a stray token).
    #[error("{0}")]
    LabelSyntax(String),
    /// A structured `metav1.LabelSelector` holds a requirement Kubernetes
    /// would reject (bad key or value, wrong number of values).
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` entry uses an operator other than
    /// In, NotIn, Exists or DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
    /// A structured `metav1.LabelSelector` does not have the expected JSON shape.
    #[error("invalid label selector: {0}")]
    MalformedLabelSelector(&'static str),
    /// A field selector term has no `=`, `==` or `!=` operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidFieldTerm { selector: String, term: String },
    /// A field selector value holds a backslash escape other than `\\`, `\,` or `\=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A field selector value holds an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedCharacter(char),
    /// The field is not selectable for this kind.
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// How a label requirement relates a key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>5`
    GreaterThan,
    /// `key<5`
    LessThan,
}

/// One requirement of a label selector; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    pub values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement, validating it as Kubernetes' `NewRequirement` does.
    fn new(key: &str, operator: LabelOperator, values: Vec<String>) -> Result<Self, String> {
        let mut errs = Vec::new();
        if let Some(e) = validate_label_key(key) {
            errs.push(e);
        }
        match operator {
            LabelOperator::In | LabelOperator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                quote_list(&values)
            )),
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    quote_list(&values)
                ))
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
                errs.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not exist",
                    quote_list(&values)
                ))
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        quote_list(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(detail) = validate_label_value(v) {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {v:?}: {detail}"
                ));
            }
        }
        match errs.len() {
            0 => Ok(LabelRequirement {
                key: key.to_string(),
                operator,
                values,
            }),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }

    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).and_then(Value::as_str);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                value.is_some_and(|v| self.values.iter().any(|w| w == v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                value.is_none_or(|v| !self.values.iter().any(|w| w == v))
            }
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.values.clone();
        sorted.sort();
        let joined = sorted.join(",");
        let key = &self.key;
        match self.operator {
            LabelOperator::Exists => write!(f, "{key}"),
            LabelOperator::DoesNotExist => write!(f, "!{key}"),
            LabelOperator::Equals => write!(f, "{key}={joined}"),
            LabelOperator::DoubleEquals => write!(f, "{key}=={joined}"),
            LabelOperator::NotEquals => write!(f, "{key}!={joined}"),
            LabelOperator::In => write!(f, "{key} in ({joined})"),
            LabelOperator::NotIn => write!(f, "{key} notin ({joined})"),
            LabelOperator::GreaterThan => write!(f, "{key}>{joined}"),
            LabelOperator::LessThan => write!(f, "{key}<{joined}"),
        }
    }
}

/// A parsed label selector: the AND of its requirements.
///
/// The empty selector matches everything. A selector built from a null
/// structured selector matches nothing, as in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the string syntax of `?labelSelector=`: `a=b`, `a==b`, `a!=b`,
    /// `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by commas.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser {
            tokens: lex(s),
            pos: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds a selector from a structured `metav1.LabelSelector`
    /// (`matchLabels` and `matchExpressions`), like `LabelSelectorAsSelector`.
    /// `null` matches nothing; `{}` matches everything.
    pub fn from_label_selector_value(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(obj) => obj,
            _ => return Err(SelectorError::MalformedLabelSelector("must be an object")),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v.as_str().ok_or(SelectorError::MalformedLabelSelector(
                        "matchLabels values must be strings",
                    ))?;
                    let r = LabelRequirement::new(k, LabelOperator::Equals, vec![v.to_string()])
                        .map_err(SelectorError::InvalidRequirement)?;
                    requirements.push(r);
                }
            }
            Some(_) => {
                return Err(SelectorError::MalformedLabelSelector(
                    "matchLabels must be an object",
                ))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    requirements.push(requirement_from_expression(expr)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::MalformedLabelSelector(
                    "matchExpressions must be a list",
                ))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether the given `metadata.labels` map satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the object's `metadata.labels` satisfy the selector; an object
    /// without labels is treated as having none.
    pub fn matches_object(&self, obj: &Value) -> bool {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        self.matches(labels)
    }

    /// True when the selector does not restrict anything (matches everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for the selector built from a null structured selector.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }
}

/// Kubernetes' string form: requirements sorted by key, joined by `,`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn requirement_from_expression(expr: &Value) -> Result<LabelRequirement, SelectorError> {
    let key =
        expr.get("key")
            .and_then(Value::as_str)
            .ok_or(SelectorError::MalformedLabelSelector(
                "matchExpressions[].key must be a string",
            ))?;
    let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
    let operator = match op {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        other => return Err(SelectorError::InvalidOperator(other.to_string())),
    };
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(SelectorError::MalformedLabelSelector(
                "matchExpressions[].values must be strings",
            ))?,
        Some(_) => {
            return Err(SelectorError::MalformedLabelSelector(
                "matchExpressions[].values must be a list",
            ))
        }
    };
    LabelRequirement::new(key, operator, values).map_err(SelectorError::InvalidRequirement)
}

fn quote_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

// --- validation, as k8s.io/apimachinery/pkg/util/validation ---------------

const QUALIFIED_NAME_MAX_LEN: usize = 63;
const LABEL_VALUE_MAX_LEN: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                lower_alnum(first)
                    && lower_alnum(last)
                    && b.iter().all(|c| lower_alnum(c) || *c == b'-')
            }
            _ => false,
        }
    })
}

/// Returns the error detail when `key` is not a valid label key
/// (an optional DNS subdomain prefix, `/`, and a qualified name).
fn validate_label_key(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > DNS1123_SUBDOMAIN_MAX_LEN {
                    errs.push(format!(
                        "prefix part must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} characters"
                    ));
                }
                if !is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {DNS1123_SUBDOMAIN_ERR}"));
                }
            }
            *name
        }
        _ => {
            return Some(format!(
                "Invalid value: {key:?}: a qualified name {QUALIFIED_NAME_ERR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ))
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LEN {
            errs.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX_LEN} characters"
            ));
        }
        if !is_qualified_name_part(name) {
            errs.push(format!("name part {QUALIFIED_NAME_ERR}"));
        }
    }
    if errs.is_empty() {
        None
    } else {
        Some(format!("Invalid value: {key:?}: {}", errs.join("; ")))
    }
}

/// Returns the error detail when `value` is not a valid label value.
fn validate_label_value(value: &str) -> Option<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LEN {
        errs.push(format!(
            "must be no more than {LABEL_VALUE_MAX_LEN} characters"
        ));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(LABEL_VALUE_ERR.to_string());
    }
    if errs.is_empty() {
        None
    } else {
        Some(errs.join("; "))
    }
}

// --- lexer ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    tok: Tok,
    literal: String,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a label selector into tokens; always ends with `Tok::End`.
fn lex(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_whitespace(chars[i]) {
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            tokens.push(Token {
                tok: Tok::End,
                literal: String::new(),
            });
            return tokens;
        };
        if is_special(c) {
            // The only two-character operators are `!=` and `==`.
            let next = chars.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                ('!', Some('=')) => (Tok::NotEquals, 2),
                ('=', Some('=')) => (Tok::DoubleEquals, 2),
                ('!', _) => (Tok::Not, 1),
                ('=', _) => (Tok::Equals, 1),
                ('(', _) => (Tok::OpenPar, 1),
                (')', _) => (Tok::ClosedPar, 1),
                (',', _) => (Tok::Comma, 1),
                ('>', _) => (Tok::GreaterThan, 1),
                _ => (Tok::LessThan, 1),
            };
            tokens.push(Token {
                tok,
                literal: chars[i..i + len].iter().collect(),
            });
            i += len;
        } else {
            let start = i;
            while i < chars.len() && !is_special(chars[i]) && !is_whitespace(chars[i]) {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            let tok = match literal.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Identifier,
            };
            tokens.push(Token { tok, literal });
        }
    }
}

// --- parser ---------------------------------------------------------------

/// Whether `in`/`notin` are keywords (after a key) or plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek_at(&self, pos: usize, ctx: Context) -> (Tok, String) {
        let (tok, literal) = match self.tokens.get(pos) {
            Some(t) => (t.tok, t.literal.clone()),
            None => (Tok::End, String::new()),
        };
        match (ctx, tok) {
            (Context::Values, Tok::In | Tok::NotIn) => (Tok::Identifier, literal),
            _ => (tok, literal),
        }
    }

    fn lookahead(&self, ctx: Context) -> (Tok, String) {
        self.peek_at(self.pos, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Tok, String) {
        let item = self.peek_at(self.pos, ctx);
        self.pos += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Tok::Identifier | Tok::Not => {
                    let r = self
                        .parse_requirement()
                        .map_err(SelectorError::UnparsableRequirement)?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Tok::Identifier && t2 != Tok::Not {
                                return Err(SelectorError::LabelSyntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::LabelSyntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::LabelSyntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return LabelRequirement::new(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let mut values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        values.sort();
        values.dedup();
        LabelRequirement::new(&key, operator, values)
    }

    /// Reads `[!]KEY`; infers Exists / DoesNotExist when no operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOperator>), String> {
        let mut operator = None;
        let (mut tok, mut literal) = self.consume(Context::Values);
        if tok == Tok::Not {
            operator = Some(LabelOperator::DoesNotExist);
            (tok, literal) = self.consume(Context::Values);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(e) = validate_label_key(&literal) {
            return Err(e);
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Tok::End || next == Tok::Comma) && operator.is_none() {
            operator = Some(LabelOperator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<LabelOperator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Tok::In => LabelOperator::In,
            Tok::Equals => LabelOperator::Equals,
            Tok::DoubleEquals => LabelOperator::DoubleEquals,
            Tok::GreaterThan => LabelOperator::GreaterThan,
            Tok::LessThan => LabelOperator::LessThan,
            Tok::NotIn => LabelOperator::NotIn,
            Tok::NotEquals => LabelOperator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    /// Reads `(a,b,c)`; empty entries are the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (close, _) = self.consume(Context::Values);
                if close != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Tok::Identifier => {
                    values.push(lit);
                    let (next, next_lit) = self.lookahead(Context::Values);
                    match next {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{next_lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new()); // "(,"
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Tok::ClosedPar {
                        values.push(String::new()); // ",)"
                        return Ok(values);
                    }
                    if next == Tok::Comma {
                        values.push(String::new()); // ",,"
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Tok::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// `=`/`==` (equal) or `!=`: the only operators of field selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One `field<op>value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    /// The unescaped value.
    pub value: String,
}

/// A parsed field selector: the AND of its terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `?fieldSelector=`: `f=v`, `f==v`, `f!=v` joined by commas. In
    /// values, `\,`, `\=` and `\\` escape `,`, `=` and `\`.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(s) {
            if term.is_empty() {
                continue;
            }
            let Some((lhs, operator, rhs)) = split_term(term) else {
                return Err(SelectorError::InvalidFieldTerm {
                    selector: s.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: lhs.trim().to_string(),
                operator,
                value: unescape_value(rhs)?,
            });
        }
        requirements.sort_by(|a, b| a.field.cmp(&b.field));
        Ok(FieldSelector { requirements })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The fields the selector refers to, in term order (sorted by field).
    pub fn fields(&self) -> Vec<&str> {
        self.requirements.iter().map(|r| r.field.as_str()).collect()
    }

    /// The terms, sorted by field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value a term requires for `field` with `=`, if any
    /// (useful to serve `metadata.name=x` or `spec.nodeName=n` from an index).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Checks every field is selectable for the kind, as the field label
    /// conversion functions of Kubernetes do.
    pub fn validate_for(&self, group: &str, kind: &str) -> Result<(), SelectorError> {
        let supported = supported_fields(group, kind);
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(SelectorError::FieldLabelNotSupported(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether the object satisfies every term. The kind comes from the
    /// object's `apiVersion` and `kind`; fields compare as strings
    /// (booleans as `true`/`false`, missing as empty, counts default to `0`).
    pub fn matches(&self, obj: &Value) -> bool {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.matches_kind(group, kind, obj)
    }

    /// Like [`FieldSelector::matches`] for an object whose group and kind are known.
    pub fn matches_kind(&self, group: &str, kind: &str, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let have = field_value(group, kind, obj, &r.field);
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }
}

/// Splits on commas not escaped by a backslash (escapes are kept).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` win over `=` at one position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(SelectorError::InvalidEscapeSequence(format!("\\{other}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            other => out.push(other),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscapeSequence("\\".to_string()));
    }
    Ok(out)
}

const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    "spec.host",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const SERVICE_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.clusterIP",
    "spec.type",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
const REPLICAS_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "spec.signerName"];

/// The fields `?fieldSelector=` may use for a kind. Kinds without their own
/// list accept `metadata.name` and `metadata.namespace`. Node and Namespace
/// accept no `metadata.namespace`, exactly like Kubernetes.
pub fn supported_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => POD_FIELDS,
        ("", "Event") => EVENT_FIELDS,
        ("", "Secret") => SECRET_FIELDS,
        ("", "Service") => SERVICE_FIELDS,
        ("", "Node") => NODE_FIELDS,
        ("", "Namespace") => NAMESPACE_FIELDS,
        ("", "ReplicationController") | ("apps", "ReplicaSet") => REPLICAS_FIELDS,
        ("batch", "Job") => JOB_FIELDS,
        ("certificates.k8s.io", "CertificateSigningRequest") => CSR_FIELDS,
        _ => META_FIELDS,
    }
}

/// The string value of a selectable field of an object, as Kubernetes
/// computes it for matching (`GetAttrs`): strings as they are, booleans as
/// `true`/`false`, numbers in decimal, missing fields as empty, except where
/// Kubernetes reads a defaulted Go field (`status.replicas` is `0`, `spec.unschedulable` is `false`...).
pub fn field_value(group: &str, kind: &str, obj: &Value, field: &str) -> String {
    match (group, kind, field) {
        ("", "Pod", "spec.host") => path_string(obj, "spec.nodeName"),
        ("", "Pod", "spec.hostNetwork") => bool_or_false(obj, "spec.hostNetwork"),
        ("", "Pod", "status.podIP") => obj
            .pointer("/status/podIPs/0/ip")
            .and_then(Value::as_str)
            .map_or_else(|| path_string(obj, "status.podIP"), str::to_string),
        // Accepted by Kubernetes' conversion but never part of the field set.
        ("", "Pod", "status.podIPs") => String::new(),
        ("", "Event", "source") => {
            let component = path_string(obj, "source.component");
            if component.is_empty() {
                path_string(obj, "reportingComponent")
            } else {
                component
            }
        }
        ("", "Node", "spec.unschedulable") => bool_or_false(obj, "spec.unschedulable"),
        ("", "ReplicationController", "status.replicas")
        | ("apps", "ReplicaSet", "status.replicas") => int_or_zero(obj, "status.replicas"),
        ("batch", "Job", "status.successful") => int_or_zero(obj, "status.succeeded"),
        _ => path_string(obj, field),
    }
}

fn lookup<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, part| v.get(part))
}

fn path_string(obj: &Value, dotted: &str) -> String {
    match lookup(obj, dotted) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn bool_or_false(obj: &Value, dotted: &str) -> String {
    lookup(obj, dotted)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn int_or_zero(obj: &Value, dotted: &str) -> String {
    lookup(obj, dotted)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn sel(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e.to_string(),
        }
    }

    fn fsel(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    // --- label selector: operators ---

    #[test]
    fn equals_and_double_equals_match_only_that_value() {
        let l = labels(json!({"app": "web", "tier": "fe"}));
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(!sel("missing=web").matches(&l));
    }

    #[test]
    fn not_equals_matches_other_values_and_missing_keys() {
        let l = labels(json!({"app": "web"}));
        assert!(!sel("app!=web").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(sel("missing!=x").matches(&l));
    }

    #[test]
    fn in_matches_any_listed_value() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (dev,prod)").matches(&l));
        assert!(sel("env in (prod)").matches(&l));
        assert!(!sel("env in (dev,qa)").matches(&l));
        assert!(!sel("other in (prod)").matches(&l));
    }

    #[test]
    fn notin_matches_unlisted_values_and_missing_keys() {
        let l = labels(json!({"env": "prod"}));
        assert!(!sel("env notin (prod)").matches(&l));
        assert!(sel("env notin (dev, qa)").matches(&l));
        assert!(sel("other notin (prod)").matches(&l));
    }

    #[test]
    fn bare_key_requires_the_label_to_exist() {
        assert!(sel("app").matches(&labels(json!({"app": ""}))));
        assert!(!sel("app").matches(&labels(json!({"other": "x"}))));
    }

    #[test]
    fn bang_key_requires_the_label_to_be_absent() {
        assert!(sel("!app").matches(&labels(json!({"other": "x"}))));
        assert!(!sel("!app").matches(&labels(json!({"app": "x"}))));
    }

    #[test]
    fn greater_and_less_than_compare_integers() {
        let l = labels(json!({"n": "5", "s": "abc"}));
        assert!(sel("n>4").matches(&l));
        assert!(!sel("n>5").matches(&l));
        assert!(sel("n<6").matches(&l));
        assert!(!sel("s>1").matches(&l));
        assert!(!sel("missing<1").matches(&l));
    }

    #[test]
    fn commas_join_requirements_with_and() {
        let l = labels(json!({"app": "web", "env": "prod"}));
        assert!(sel("app=web,env in (prod)").matches(&l));
        assert!(!sel("app=web,env=dev").matches(&l));
        assert!(sel("app=web,!canary,env").matches(&l));
    }

    #[test]
    fn whitespace_around_tokens_is_ignored() {
        let l = labels(json!({"app": "web", "env": "prod"}));
        assert!(sel("  app = web ,  env  in ( dev , prod ) ").matches(&l));
        assert!(sel(" ! canary ").matches(&l));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(&Map::new()));
        assert!(sel("   ").is_empty());
        assert!(!sel("a").is_empty());
    }

    #[test]
    fn in_and_notin_are_plain_values_inside_parentheses() {
        let l = labels(json!({"x": "in"}));
        assert!(sel("x in (in,notin)").matches(&l));
        assert!(sel("x=in").matches(&l));
    }

    #[test]
    fn empty_values_are_allowed() {
        let l = labels(json!({"a": ""}));
        assert!(sel("a=").matches(&l));
        assert!(sel("a in ()").matches(&l));
        assert!(sel("a in (,x)").matches(&l));
        assert!(sel("a=,b!=").matches(&l));
    }

    #[test]
    fn prefixed_keys_are_accepted() {
        let l = labels(json!({"app.kubernetes.io/name": "web"}));
        assert!(sel("app.kubernetes.io/name=web").matches(&l));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert!(sel("app=web").matches_object(&pod));
        assert!(sel("!app").matches_object(&json!({"metadata": {"name": "q"}})));
    }

    #[test]
    fn display_sorts_requirements_and_values_like_kubernetes() {
        assert_eq!(
            sel("z=1,a in (y,x),!m,k,n notin (b),g>3,h!=2").to_string(),
            "a in (x,y),g>3,h!=2,k,!m,n notin (b),z=1"
        );
    }

    // --- label selector: errors ---

    #[test]
    fn invalid_value_is_rejected_with_kubernetes_message() {
        let e = err("app=-bad");
        assert!(e.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be"), "{e}");
    }

    #[test]
    fn too_long_value_is_rejected() {
        let e = err(&format!("app={}", "a".repeat(64)));
        assert!(e.contains("must be no more than 63 characters"), "{e}");
    }

    #[test]
    fn invalid_key_is_rejected() {
        let e = err("-app=web");
        assert!(
            e.starts_with(
                "unable to parse requirement: Invalid value: \"-app\": name part must consist of"
            ),
            "{e}"
        );
        assert!(err("Example.com/app=x").contains("prefix part a lowercase RFC 1123 subdomain"));
        assert!(err("/app=x").contains("prefix part must be non-empty"));
        assert!(err("a/b/c=x").contains("a qualified name must consist of"));
        assert!(err(&"k".repeat(64)).contains("name part must be no more than 63 characters"));
    }

    #[test]
    fn trailing_comma_is_rejected() {
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
    }

    #[test]
    fn leading_comma_is_rejected() {
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
    }

    #[test]
    fn two_values_without_comma_are_rejected() {
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
    }

    #[test]
    fn unknown_operator_is_rejected() {
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn missing_parenthesis_is_rejected() {
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert!(err("a in (x")
            .starts_with("unable to parse requirement: found '', expected: ',' or ')'"));
    }

    #[test]
    fn bang_without_key_is_rejected() {
        assert_eq!(
            err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
    }

    #[test]
    fn non_integer_for_greater_than_is_rejected() {
        assert!(err("a>x").contains("for 'Gt', 'Lt' operators, the value must be an integer"));
    }

    // --- structured metav1.LabelSelector ---

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let s = LabelSelector::from_label_selector_value(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "qa"]},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }));
        let s = match s {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.matches(&labels(json!({"app": "web", "env": "qa", "team": "a"}))));
        assert!(!s.matches(&labels(
            json!({"app": "web", "env": "qa", "team": "a", "canary": "1"})
        )));
        assert!(!s.matches(&labels(json!({"app": "web", "env": "dev", "team": "a"}))));
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env in (prod,qa),team,tier notin (db)"
        );
    }

    #[test]
    fn empty_structured_selector_matches_everything_and_null_matches_nothing() {
        let everything = LabelSelector::from_label_selector_value(&json!({}));
        assert_eq!(everything, Ok(LabelSelector::everything()));
        let nothing = LabelSelector::from_label_selector_value(&Value::Null);
        assert_eq!(nothing, Ok(LabelSelector::nothing()));
        assert!(!LabelSelector::nothing().matches(&Map::new()));
        assert!(!LabelSelector::nothing().is_empty());
    }

    #[test]
    fn structured_selector_rejects_unknown_operator() {
        let e = LabelSelector::from_label_selector_value(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }));
        assert_eq!(e, Err(SelectorError::InvalidOperator("Gt".into())));
        assert_eq!(
            SelectorError::InvalidOperator("Gt".into()).to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
    }

    #[test]
    fn structured_selector_rejects_in_without_values() {
        let e = LabelSelector::from_label_selector_value(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }));
        match e {
            Err(SelectorError::InvalidRequirement(m)) => {
                assert!(m.contains("values set can't be empty"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn structured_selector_rejects_exists_with_values() {
        let e = LabelSelector::from_label_selector_value(&json!({
            "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
        }));
        assert!(
            matches!(e, Err(SelectorError::InvalidRequirement(m)) if m.contains("values set must be empty"))
        );
    }

    #[test]
    fn structured_selector_rejects_invalid_label_values_and_bad_shapes() {
        let e = LabelSelector::from_label_selector_value(&json!({"matchLabels": {"a": "b c"}}));
        assert!(matches!(e, Err(SelectorError::InvalidRequirement(_))));
        let e = LabelSelector::from_label_selector_value(&json!({"matchLabels": {"a": 1}}));
        assert!(matches!(e, Err(SelectorError::MalformedLabelSelector(_))));
        let e = LabelSelector::from_label_selector_value(&json!("app=web"));
        assert!(matches!(e, Err(SelectorError::MalformedLabelSelector(_))));
    }

    // --- field selectors ---

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}
        })
    }

    #[test]
    fn field_equals_and_double_equals_match_the_value() {
        assert!(fsel("spec.nodeName=n1").matches(&pod()));
        assert!(fsel("spec.nodeName==n1").matches(&pod()));
        assert!(!fsel("spec.nodeName=n2").matches(&pod()));
    }

    #[test]
    fn field_not_equals_excludes_the_value() {
        assert!(fsel("status.phase!=Succeeded").matches(&pod()));
        assert!(!fsel("status.phase!=Running").matches(&pod()));
    }

    #[test]
    fn field_terms_are_anded() {
        let s = fsel("metadata.namespace=default,status.phase!=Failed,metadata.name=web-1");
        assert!(s.matches(&pod()));
        assert!(!fsel("metadata.namespace=default,metadata.name=other").matches(&pod()));
        assert_eq!(
            s.fields(),
            vec!["metadata.name", "metadata.namespace", "status.phase"]
        );
    }

    #[test]
    fn missing_fields_compare_as_empty() {
        let unscheduled = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert!(fsel("spec.nodeName=").matches(&unscheduled));
        assert!(fsel("spec.nodeName!=").matches(&pod()));
    }

    #[test]
    fn booleans_compare_as_true_or_false_and_default_to_false() {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}});
        assert!(fsel("spec.unschedulable=false").matches(&node));
        let cordoned = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(fsel("spec.unschedulable=true").matches(&cordoned));
        assert!(fsel("spec.hostNetwork=false").matches(&pod()));
    }

    #[test]
    fn counts_compare_as_decimal_and_default_to_zero() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {"succeeded": 1}});
        assert!(fsel("status.successful=1").matches(&job));
        let fresh = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        assert!(fsel("status.successful=0").matches(&fresh));
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "status": {"replicas": 3}});
        assert!(fsel("status.replicas=3").matches(&rs));
    }

    #[test]
    fn event_source_falls_back_to_reporting_component() {
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "web-1"}, "reportingComponent": "kubelet", "type": "Normal"});
        assert!(fsel(
            "source=kubelet,involvedObject.kind=Pod,involvedObject.name=web-1,type=Normal"
        )
        .matches(&ev));
        assert!(fsel("reportingComponent=kubelet").matches(&ev));
    }

    #[test]
    fn pod_ip_comes_from_the_first_pod_ip() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "status": {"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}});
        assert!(fsel("status.podIP=fd00::1").matches(&p));
    }

    #[test]
    fn spec_host_is_an_alias_of_node_name() {
        assert!(fsel("spec.host=n1").matches(&pod()));
        assert_eq!(fsel("spec.host=n1").validate_for("", "Pod"), Ok(()));
    }

    #[test]
    fn escaped_commas_and_equals_are_part_of_the_value() {
        let s = fsel(r"metadata.name=a\,b\=c\\d,status.phase=Running");
        assert_eq!(s.requirements()[0].value, r"a,b=c\d");
        assert_eq!(s.requirements().len(), 2);
        let obj =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": r"a,b=c\d"}});
        assert!(fsel(r"metadata.name=a\,b\=c\\d").matches(&obj));
    }

    #[test]
    fn unknown_escape_is_rejected() {
        assert_eq!(
            FieldSelector::parse(r"a=b\x"),
            Err(SelectorError::InvalidEscapeSequence(r"\x".into()))
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\"),
            Err(SelectorError::InvalidEscapeSequence(r"\".into()))
        );
        assert_eq!(
            SelectorError::InvalidEscapeSequence(r"\x".into()).to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
    }

    #[test]
    fn unescaped_equals_in_value_is_rejected() {
        assert_eq!(
            FieldSelector::parse("a=b=c"),
            Err(SelectorError::UnescapedCharacter('='))
        );
    }

    #[test]
    fn term_without_operator_is_rejected() {
        let e = FieldSelector::parse("metadata.name");
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("invalid selector: 'metadata.name'; can't understand 'metadata.name'".to_string())
        );
        assert!(FieldSelector::parse("a=b,c<d").is_err());
    }

    #[test]
    fn empty_field_selector_matches_everything() {
        let s = fsel("");
        assert!(s.is_empty());
        assert!(s.matches(&pod()));
        assert!(fsel(",,").is_empty());
    }

    #[test]
    fn exact_match_is_reported_for_indexing() {
        let s = fsel("spec.nodeName=n1,status.phase!=Failed");
        assert_eq!(s.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(s.requires_exact_match("status.phase"), None);
    }

    #[test]
    fn unsupported_field_is_rejected_per_kind() {
        assert_eq!(fsel("spec.nodeName=n1").validate_for("", "Pod"), Ok(()));
        assert_eq!(
            fsel("spec.foo=x").validate_for("", "Pod"),
            Err(SelectorError::FieldLabelNotSupported("spec.foo".into()))
        );
        assert_eq!(
            SelectorError::FieldLabelNotSupported("spec.foo".into()).to_string(),
            "field label not supported: spec.foo"
        );
        assert!(fsel("spec.nodeName=n1")
            .validate_for("", "ConfigMap")
            .is_err());
        assert_eq!(
            fsel("metadata.namespace=a,metadata.name=b").validate_for("apps", "Deployment"),
            Ok(())
        );
        assert_eq!(fsel("type=Opaque").validate_for("", "Secret"), Ok(()));
        assert_eq!(
            fsel("status.successful=1").validate_for("batch", "Job"),
            Ok(())
        );
        assert_eq!(
            fsel("status.replicas=1").validate_for("apps", "ReplicaSet"),
            Ok(())
        );
        assert_eq!(
            fsel("spec.unschedulable=true").validate_for("", "Node"),
            Ok(())
        );
        assert_eq!(
            fsel("status.phase=Active").validate_for("", "Namespace"),
            Ok(())
        );
        assert_eq!(
            fsel("involvedObject.uid=u,reason=r,source=s").validate_for("", "Event"),
            Ok(())
        );
    }

    #[test]
    fn node_and_namespace_reject_metadata_namespace_like_kubernetes() {
        assert!(fsel("metadata.namespace=")
            .validate_for("", "Node")
            .is_err());
        assert!(fsel("metadata.namespace=")
            .validate_for("", "Namespace")
            .is_err());
    }

    #[test]
    fn every_kind_supports_metadata_name() {
        for (g, k) in [
            ("", "Pod"),
            ("", "Event"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "Secret"),
            ("apps", "ReplicaSet"),
            ("batch", "Job"),
            ("coordination.k8s.io", "Lease"),
        ] {
            assert!(supported_fields(g, k).contains(&"metadata.name"), "{g}/{k}");
        }
    }
}
