//! The JSON schema generated from the `raw` types, and validation of a document against it.
//!
//! The schema is built once per process from the Rust types (schemars), so the published
//! schema/protector.schema.json, editor completion and the validation `check` and `run` do can
//! never disagree. Validation is offline: the schema has no remote references.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::Problem;
use super::position::escape;
use super::raw::{DURATION_PATTERN, RawConfig};

/// The schema as JSON.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = schemars::schema_for!(RawConfig);
        serde_json::to_value(schema).expect("a generated schema is valid JSON")
    })
}

/// The schema as `protector schema` prints it (and as it is committed).
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(schema()).expect("a schema serializes");
    text.push('\n');
    text
}

/// Every schema violation in `document`, with a one-line reason each.
pub fn validate(document: &Value) -> Vec<Problem> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(schema()).expect("the generated schema compiles")
    });
    let mut problems = Vec::new();
    for error in validator.iter_errors(document) {
        let at = error.instance_path().as_str().to_string();
        let instance = error.instance();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    problems.push(Problem::new(
                        format!("{at}/{}", escape(key)),
                        format!("unknown key `{key}`"),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                problems.push(Problem::new(at, format!("missing required key `{key}`")));
            }
            ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
                problems.push(Problem::new(
                    at,
                    format!(
                        "{instance} is not a duration (use seconds, or a string such as 90s, 5m, 1500ms, 1h30m)"
                    ),
                ));
            }
            ValidationErrorKind::ExclusiveMinimum { .. } => {
                problems.push(Problem::new(at, format!("{instance} must be greater than zero")));
            }
            ValidationErrorKind::MinItems { .. } => {
                problems.push(Problem::new(at, "must not be empty"));
            }
            ValidationErrorKind::MinLength { .. } => {
                problems.push(Problem::new(at, "must not be an empty string"));
            }
            _ => problems.push(Problem::new(at, error.to_string())),
        }
    }
    problems
}
