//! Problems found in a `lain.yaml`: where (file, line, column, key path), what, and how to fix it.

use marked_yaml::Span;
use serde::Serialize;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file is accepted, but something in it is ignored, clamped or deprecated.
    Warning,
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Key path, e.g. `web.memory` or `build.script[2]`; empty for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: ",
            self.file, self.line, self.column
        )?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Collects the problems of one file.
#[derive(Debug)]
pub struct Report {
    file: String,
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// An empty report for `file`.
    pub fn new(file: &str) -> Report {
        Report {
            file: file.to_string(),
            diagnostics: Vec::new(),
        }
    }

    /// Records an error at `span`.
    pub fn error(
        &mut self,
        span: &Span,
        path: &str,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Severity::Error, span, path, message.into())
    }

    /// Records a warning at `span`.
    pub fn warn(&mut self, span: &Span, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, span, path, message.into())
    }

    fn push(
        &mut self,
        severity: Severity,
        span: &Span,
        path: &str,
        message: String,
    ) -> &mut Diagnostic {
        let (line, column) = span.start().map_or((1, 1), |m| (m.line(), m.column()));
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message,
            hint: None,
        });
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    /// Whether an error was recorded.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The problems, in file order.
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }
}

impl Diagnostic {
    /// Adds a hint.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// The closest candidate to a misspelt key, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["num_instances", "memory", "mountpoint"];
        assert_eq!(did_you_mean("num_instanses", keys), Some("num_instances"));
        assert_eq!(did_you_mean("memroy", keys), Some("memory"));
        assert_eq!(did_you_mean("colour", keys), None);
    }
}
