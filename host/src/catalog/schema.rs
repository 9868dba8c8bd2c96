//! A route's JSON Schema, compiled once when its function is loaded.

use serde_json::Value;

use crate::problem::FieldError;

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
    /// Compiles `schema` once, with a linear-time regex engine and no external references.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .with_retriever(NoRetrieval)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(true)
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
        let schema = Schema::compile(&json!({
            "type": "object",
            "properties": {"title": {"type": "string", "maxLength": 3}, "n": {"type": "integer"}},
            "required": ["title"]
        }))
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
        let err = Schema::compile(&json!({"$ref": "https://example.com/s.json"}));
        assert!(err.is_err());
        let err = Schema::compile(&json!({"$ref": "file:///etc/passwd"}));
        assert!(err.is_err());
    }
}
