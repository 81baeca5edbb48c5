//! Walking a parsed YAML document by field path, so that every problem names the field
//! (`spec.triggers[0].metadata.value`). Knows nothing of KEDA: the callers say what to read.

use serde_yaml::Value;

/// A problem with one field, before the file and object are known.
#[derive(Debug)]
pub(super) struct FieldError {
    pub field: String,
    pub problem: String,
}

/// A possibly absent value and the path that led to it.
#[derive(Debug, Clone)]
pub(super) struct Field<'a> {
    value: Option<&'a Value>,
    path: String,
}

impl<'a> Field<'a> {
    /// The document itself.
    pub fn root(value: &'a Value) -> Self {
        Self {
            value: Some(value),
            path: String::new(),
        }
    }

    /// The child `key` of a mapping; absent when this is absent or not a mapping.
    pub fn get(&self, key: &str) -> Field<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Field {
            value: self.value.and_then(|v| v.get(key)),
            path,
        }
    }

    /// A problem with this field.
    pub fn error(&self, problem: impl Into<String>) -> FieldError {
        FieldError {
            field: self.path.clone(),
            problem: problem.into(),
        }
    }

    fn present(&self) -> Option<&'a Value> {
        self.value.filter(|v| !v.is_null())
    }

    /// Whether the field is there and not null.
    pub fn is_present(&self) -> bool {
        self.present().is_some()
    }

    /// The items of a sequence; none when absent.
    pub fn items(&self) -> Result<Vec<Field<'a>>, FieldError> {
        let Some(value) = self.present() else {
            return Ok(Vec::new());
        };
        let seq = value
            .as_sequence()
            .ok_or_else(|| self.error("expected a list"))?;
        Ok(seq
            .iter()
            .enumerate()
            .map(|(i, v)| Field {
                value: Some(v),
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// A string; `None` when absent.
    pub fn str(&self) -> Result<Option<&'a str>, FieldError> {
        match self.present() {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.error(format!("expected a string, got {}", show(v)))),
        }
    }

    /// A string that must be there.
    pub fn required_str(&self) -> Result<&'a str, FieldError> {
        self.str()?.ok_or_else(|| self.error("missing"))
    }

    /// A scalar (string, number or boolean) as text; `None` when absent.
    pub fn text(&self) -> Result<Option<String>, FieldError> {
        match self.present() {
            None => Ok(None),
            Some(v) => scalar_text(v)
                .map(Some)
                .ok_or_else(|| self.error(format!("expected a scalar, got {}", show(v)))),
        }
    }

    /// A non-negative integer (Kubernetes int32 fields); `None` when absent.
    pub fn u32(&self) -> Result<Option<u32>, FieldError> {
        match self.present() {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!("expected a non-negative integer, got {}", show(v)))
                }),
        }
    }

    /// A number written as a number or as a string (KEDA trigger metadata is all strings);
    /// `None` when absent.
    pub fn number(&self) -> Result<Option<f64>, FieldError> {
        let Some(text) = self.text()? else {
            return Ok(None);
        };
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| self.error(format!("expected a number, got {text:?}")))
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(_) => "a tagged value".to_owned(),
        other => scalar_text(other).map_or_else(|| "null".to_owned(), |t| format!("{t:?}")),
    }
}
