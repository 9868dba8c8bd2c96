//! A route's JSON Schema, compiled once when its function is loaded.

use serde_json::Value;

use crate::config::manifest::Formats;
use crate::problem::FieldError;

/// The vocabulary that makes `format` an assertion (JSON Schema 2020-12, §7.2.2).
const FORMAT_ASSERTION: &str = "https://json-schema.org/draft/2020-12/vocab/format-assertion";

/// A route's compiled JSON Schema.
pub struct Schema(jsonschema::Validator);

/// Refuses every external `$ref`: a tenant's schema must not make the host
/// fetch anything, from the network or the disk.
struct NoRetrieval;

impl jsonschema::Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("external reference {uri} is not allowed").into())
    }
}

impl Schema {
    /// Compiles `schema` once, with a linear-time regex engine and no
    /// external references. `format` is an annotation, as the draft says,
    /// unless the route asks for assertion or the schema's `$vocabulary`
    /// lists the format-assertion vocabulary.
    pub fn compile(schema: &Value, formats: Formats) -> Result<Self, String> {
        let asserted = schema
            .get("$vocabulary")
            .and_then(Value::as_object)
            .is_some_and(|v| v.contains_key(FORMAT_ASSERTION));
        jsonschema::options()
            .with_retriever(NoRetrieval)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(asserted || formats == Formats::Assert)
            .build(schema)
            .map(Schema)
            .map_err(|e| e.to_string())
    }

    /// Every failing location in `instance`.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        self.0
            .iter_errors(instance)
            .map(|e| FieldError {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_failing_pointer_is_named() {
        let schema = Schema::compile(
            &json!({
            "type": "object",
            "properties": {"title": {"type": "string", "maxLength": 3}, "n": {"type": "integer"}},
            "required": ["title"]
            }),
            Formats::Annotate,
        )
        .expect("compile");
        let mut pointers: Vec<_> = schema
            .errors(&json!({"title": "long", "n": "x"}))
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        pointers.sort();
        assert_eq!(pointers, vec!["/n", "/title"]);
    }

    #[test]
    fn external_refs_are_refused_at_compile_time() {
        let err = Schema::compile(
            &json!({"$ref": "https://example.com/s.json"}),
            Formats::Annotate,
        );
        assert!(err.is_err());
        let err = Schema::compile(&json!({"$ref": "file:///etc/passwd"}), Formats::Annotate);
        assert!(err.is_err());
    }

    #[test]
    fn formats_are_annotations_unless_asked_for() {
        let email = json!({"type": "string", "format": "email"});
        let fails = |schema: &Value, formats| {
            !Schema::compile(schema, formats)
                .expect("compile")
                .errors(&json!("not an address"))
                .is_empty()
        };
        assert!(!fails(&email, Formats::Annotate));
        assert!(fails(&email, Formats::Assert));
        let mut vocabulary = email.clone();
        vocabulary["$vocabulary"] = json!({
            "https://json-schema.org/draft/2020-12/vocab/core": true,
            FORMAT_ASSERTION: true,
        });
        assert!(fails(&vocabulary, Formats::Annotate));
    }
}
