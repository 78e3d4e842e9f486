//! The JSON schema generated from the `raw` types, and validation of a document against it.
//!
//! The schema is built once per process from the Rust types (schemars), so the published
//! schema/protector.schema.json, editor completion and the validation `check` and `run` do
//! agree. Validation is offline: the schema has no remote references. One rule differs by
//! design: a target name may hold letters of any script, which only a Unicode property class
//! (`\p{L}`) says, outside the regular expressions every validator reads; the published
//! schema ([`schema_text`]) forbids control characters and a leading space in a name, and
//! `check` and `run` enforce the whole rule ([`NAME_PATTERN`]). Only standard formats are
//! kept (schemars' `uint32` and the like are not formats other validators know).

use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::Problem;
use super::position::escape;
use super::raw::{ENDPOINT_PATTERN, NAME_PATTERN, RawConfig};

/// The schema as JSON, and compiled: made when first needed, kept until [`release`].
struct Compiled {
    schema: Value,
    /// Compiled when first needed.
    validator: OnceLock<jsonschema::Validator>,
}

impl Compiled {
    fn validator(&self) -> &jsonschema::Validator {
        self.validator.get_or_init(|| {
            jsonschema::validator_for(&self.schema).expect("the generated schema compiles")
        })
    }
}

static COMPILED: Mutex<Option<Arc<Compiled>>> = Mutex::new(None);

fn compiled() -> Arc<Compiled> {
    let mut kept = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    kept.get_or_insert_with(|| {
        let schema = generated::<RawConfig>();
        let mut schema = serde_json::to_value(schema).expect("a generated schema is valid JSON");
        drop_null(&mut schema);
        drop_own_formats(&mut schema);
        Arc::new(Compiled {
            schema,
            validator: OnceLock::new(),
        })
    })
    .clone()
}

/// Validity by parts, for a document read target by target (config/stream.rs), with the one
/// compiled schema: a document is valid exactly when its top level is, its `targets` cut to
/// the first (or none), and each target is valid alone, as the only target of a config
/// (`a_document_is_valid_whole_exactly_when_it_is_valid_apart`). Only whether it is valid is
/// told: [`validate`] says why not. (A schema compiled for each part held twice the heap.)
pub struct Apart(Arc<Compiled>);

impl Apart {
    pub fn compiled() -> Apart {
        Apart(compiled())
    }

    /// Whether the top level of a document is valid, its `targets` cut to the first.
    pub fn top_is_valid(&self, document: &Value) -> bool {
        self.0.validator().is_valid(document)
    }

    /// Whether `target` is valid: whether a config of it alone is. It is given back.
    pub fn target_is_valid(&self, target: Value) -> (bool, Value) {
        let list = Value::Array(vec![target]);
        let mut alone = Value::Object(serde_json::Map::from_iter([("targets".into(), list)]));
        let valid = self.0.validator().is_valid(&alone);
        (valid, alone["targets"][0].take())
    }
}

/// The schema of `T`, in JSON Schema draft-07: every validator and editor reads it, and
/// its meta-schema is the smallest. A validator keeps the meta-schema of its draft, compiled,
/// for the rest of the process (jsonschema checks a schema against it); for draft 2020-12,
/// which protector's schema used before, that is about 560 KiB of a daemon's heap for good,
/// more than half of its private memory with one target; for draft-07, 190 KiB.
fn generated<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// Lets the compiled schema go (about half a MiB): a daemon needs it only while it loads a
/// config, so it releases it after each load and the next load compiles it again.
pub fn release() {
    *COMPILED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// An unset setting is written by leaving its key out; `null` is not a value of any setting.
/// schemars describes `Option<T>` as "T or null"; this rewrites that to plain T, which also
/// lets validation report why a value is wrong instead of "not valid under any of anyOf".
fn drop_null(value: &mut Value) {
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            let any_of = map.get("anyOf").and_then(Value::as_array);
            if let Some([a, b]) = any_of.map(Vec::as_slice)
                && (is_null(a) || is_null(b))
            {
                let kept = if is_null(a) { b.clone() } else { a.clone() };
                map.remove("anyOf");
                if let Value::Object(kept) = kept {
                    map.extend(kept);
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Formats JSON Schema itself defines; others (schemars writes `uint32`, `double`...) are
/// dropped: validators reject a schema with a format they do not know.
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn drop_own_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_own_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_own_formats),
        _ => {}
    }
}

/// What a target name may hold, in the regular expressions every validator reads: no
/// control character (C0, DEL, C1) and no leading space. The whole rule is [`NAME_PATTERN`].
pub const PORTABLE_NAME_PATTERN: &str =
    r"^[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// The schema's identifier (editors and validators name it by this; nothing is fetched).
pub const SCHEMA_ID: &str = "urn:protector:schema:config:1";

/// The schema as published: `$id`, and the target name's pattern in the portable subset.
fn published() -> Value {
    fn portable(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("pattern").and_then(Value::as_str) == Some(NAME_PATTERN) {
                    map.insert("pattern".into(), PORTABLE_NAME_PATTERN.into());
                }
                map.values_mut().for_each(portable);
            }
            Value::Array(items) => items.iter_mut().for_each(portable),
            _ => {}
        }
    }
    let mut value = compiled().schema.clone();
    portable(&mut value);
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), SCHEMA_ID.into());
    }
    value
}

/// The schema as `protector schema` prints it (and as it is committed): see the module's
/// header for how it differs from what `check` validates with.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&published()).expect("a schema serializes");
    text.push('\n');
    text
}

/// Every schema violation in `document`, with a one-line reason each.
pub fn validate(document: &Value) -> Vec<Problem> {
    let compiled = compiled();
    let mut problems = Vec::new();
    for error in compiled.validator().iter_errors(document) {
        if let ValidationErrorKind::Type { .. } = error.kind()
            && error.instance().is_null()
        {
            problems.push(Problem::new(
                error.instance_path().as_str(),
                "has no value; give it one or leave the key out",
            ));
            continue;
        }
        let at = error.instance_path().as_str().to_string();
        let instance = error.instance();
        // YAML 1.1 booleans (Salt's habit): plain strings in YAML 1.2.
        if let ValidationErrorKind::Type { .. } = error.kind()
            && let Some(word) = instance.as_str()
            && matches!(
                word.to_ascii_lowercase().as_str(),
                "yes" | "no" | "on" | "off" | "y" | "n"
            )
        {
            problems.push(Problem::new(
                at,
                format!(
                    "{word:?} is a string here: use true or false (YAML 1.2, which protector \
                     reads, has no yes/no/on/off booleans)"
                ),
            ));
            continue;
        }
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                // The keys valid here: the properties beside the failed keyword.
                let valid = error
                    .schema_path()
                    .as_str()
                    .strip_suffix("/additionalProperties")
                    .and_then(|here| compiled.schema.pointer(here))
                    .and_then(|here| here.get("properties"))
                    .and_then(Value::as_object);
                for key in unexpected {
                    let hint = valid
                        .and_then(|v| crate::text::nearest(key, v.keys().map(String::as_str)))
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    problems.push(Problem::of_kind(
                        super::problem::Kind::UnknownKey,
                        format!("{at}/{}", escape(key)),
                        format!("unknown key `{key}`{hint}"),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                problems.push(Problem::new(at, format!("missing required key `{key}`")));
            }
            ValidationErrorKind::Pattern { pattern } if pattern == NAME_PATTERN => {
                problems.push(Problem::new(
                    at,
                    format!(
                        "{} is not a valid name: use letters, digits, spaces and . _ - @ : / + \
                         (not starting with a space or a mark)",
                        crate::text::clean(&instance.to_string())
                    ),
                ));
            }
            ValidationErrorKind::Pattern { pattern } if *pattern == super::duration::pattern() => {
                // The parser's own reason (the pattern is made to accept exactly what it reads).
                let text = instance.as_str().unwrap_or_default().to_string();
                let reason = super::duration::parse(&super::duration::DurationSpec::Text(text))
                    .err()
                    .unwrap_or_else(|| format!("{instance} is not a duration"));
                problems.push(Problem::new(at, crate::text::clean(&reason).into_owned()));
            }
            ValidationErrorKind::Pattern { pattern } if pattern == ENDPOINT_PATTERN => {
                // The parser's own reason, as for durations.
                let text = instance.as_str().unwrap_or_default();
                let reason = super::model::Endpoint::parse(text)
                    .err()
                    .unwrap_or_else(|| format!("{instance} is not a TCP endpoint (host:port)"));
                problems.push(Problem::new(at, reason));
            }
            ValidationErrorKind::ExclusiveMinimum { .. } => {
                problems.push(Problem::new(
                    at,
                    format!("{instance} must be greater than zero"),
                ));
            }
            ValidationErrorKind::Maximum { .. } => {
                problems.push(Problem::new(
                    at,
                    super::duration::too_long(&instance.to_string()),
                ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// The shipped examples and the schema corpus, and documents that each part rejects.
    fn documents() -> Vec<Value> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut documents = Vec::new();
        for dir in ["examples", "tests/schema-corpus"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    documents.push(serde_yaml::from_str(&text).unwrap());
                }
            }
        }
        let target = json!({"name": "a", "heartbeat": "/b", "timeout": "1m", "start": "x"});
        documents.extend([
            json!({"targets": [target]}),
            json!({"targets": [target, {"name": "b", "heartbeat": "/c", "start": ["x"]}]}),
            json!({"targets": [target, {"name": "b", "heartbeat": "/c", "begin": "x"}]}),
            json!({"targets": [target, {"name": "b", "heartbeat": 3, "start": "x"}]}),
            json!({"targets": [target, "b"]}),
            json!({"targets": [target], "defaults": {"timeout": "soon"}}),
            json!({"targets": [target], "state_file": 3}),
            json!({"targets": [target], "targetz": []}),
            json!({"targets": []}),
            json!({"targets": target}),
            json!({"targets": "a"}),
            json!({"state_file": "/s"}),
            json!(["a"]),
        ]);
        documents
    }

    #[test]
    fn a_document_is_valid_whole_exactly_when_it_is_valid_apart() {
        let apart = Apart::compiled();
        let documents = documents();
        let mut valid = 0;
        for document in &documents {
            let whole = validate(document).is_empty();
            // As config/stream.rs reads it: each target alone, the first kept in the list.
            let mut top = document.clone();
            let mut targets = Vec::new();
            if let Some(list) = top.get_mut("targets") {
                if let Value::Array(items) = list {
                    targets = std::mem::take(items);
                }
                *list = Value::Array(targets.first().cloned().into_iter().collect());
            }
            let parts =
                apart.top_is_valid(&top) && targets.into_iter().all(|t| apart.target_is_valid(t).0);
            assert_eq!(whole, parts, "{document}");
            valid += usize::from(whole);
        }
        // Both kinds were tried.
        assert!(valid >= 4 && documents.len() - valid >= 10, "{valid}");
    }
}
