//! The Prometheus text exposition format (version 0.0.4), for every stats
//! endpoint of the module (`vlimit_stats format=prometheus`, and the ones to
//! come). A family is written as its `# HELP` and `# TYPE` lines followed by
//! its samples; the borrow of the writer by [`Family`] keeps the samples of
//! one family together, as the format requires.
//!
//! ```text
//! # HELP nginx_vlimit_requests_in_flight Requests counted on the key now.
//! # TYPE nginx_vlimit_requests_in_flight gauge
//! nginx_vlimit_requests_in_flight{zone="vl",kind="ip",key="127.0.0.1"} 2
//! ```

use core::fmt::Write;

/// The `Content-Type` of a response in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `# TYPE` of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (until the process or zone restarts); name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// A sample value: integers are written exactly, floats in Prometheus'
/// notation (`+Inf`, `-Inf`, `NaN`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// The text of one exposition, built family by family.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts the family `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`, a counter's
    /// ending in `_total`) with its help text; add its samples to the
    /// returned [`Family`].
    pub fn family<'a>(&'a mut self, name: &'a str, kind: MetricType, help: &str) -> Family<'a> {
        debug_assert!(valid_name(name), "invalid metric name {name}");
        debug_assert!(kind != MetricType::Counter || name.ends_with("_total"), "counter {name} without _total");
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        escape_into(&mut self.text, help, false);
        self.text.push_str("\n# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind.name());
        self.text.push('\n');
        Family { text: &mut self.text, name }
    }

    /// The finished text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// The samples of one family, written as they are added.
pub struct Family<'a> {
    text: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// `name{label="value",...} value`; label names follow the metric name
    /// rules (no `:`), values may hold any text (escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        self.text.push_str(self.name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, label_value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(label) && !label.contains(':'), "invalid label name {label}");
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_into(self.text, label_value, true);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        match value.into() {
            Value::Int(v) => {
                let _ = write!(self.text, "{v}");
            }
            Value::Float(v) if v.is_nan() => self.text.push_str("NaN"),
            Value::Float(v) if v.is_infinite() => self.text.push_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Value::Float(v) => {
                let _ = write!(self.text, "{v}");
            }
        }
        self.text.push('\n');
        self
    }
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Escapes `\` and newline (help text), and `"` too in a label value.
fn escape_into(out: &mut String, text: &str, label_value: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}
