//! The collection schema's rules for top-level fields (JSON type, `maxLength`, `required`),
//! checked on every pulled message: another writer's document with a wrong field type would
//! otherwise enter RxDB unchecked (memory storage does not validate) or, with a validating
//! storage, fail the whole batch again and again.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// The part of an RxDB JSON schema that is checked (the rest is ignored).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct FieldRules {
    #[serde(default)]
    properties: HashMap<String, FieldRule>,
    #[serde(default)]
    required: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct FieldRule {
    #[serde(rename = "type")]
    types: Option<JsonTypes>,
    max_length: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
enum JsonTypes {
    One(String),
    Many(Vec<String>),
}

impl JsonTypes {
    fn allows(&self, value: &str) -> bool {
        match self {
            JsonTypes::One(t) => type_matches(t, value),
            JsonTypes::Many(ts) => ts.iter().any(|t| type_matches(t, value)),
        }
    }

    fn describe(&self) -> String {
        match self {
            JsonTypes::One(t) => t.clone(),
            JsonTypes::Many(ts) => ts.join(" or "),
        }
    }
}

/// Whether a JSON value (its text, already checked to be valid JSON) has JSON-schema type `t`.
fn type_matches(t: &str, value: &str) -> bool {
    let first = value.as_bytes().first().copied().unwrap_or(b' ');
    let is_number = first == b'-' || first.is_ascii_digit();
    match t {
        "string" => first == b'"',
        "boolean" => value == "true" || value == "false",
        "null" => value == "null",
        "array" => first == b'[',
        "object" => first == b'{',
        "number" => is_number,
        // JSON schema counts 1.0 as an integer.
        "integer" => {
            is_number
                && value
                    .parse::<f64>()
                    .map(|n| n.fract() == 0.0)
                    .unwrap_or(false)
        }
        _ => true, // a type this check does not know: let RxDB decide
    }
}

fn json_kind(value: &str) -> &'static str {
    match value.as_bytes().first().copied().unwrap_or(b' ') {
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'[' => "an array",
        b'{' => "an object",
        _ => "a number",
    }
}

impl FieldRules {
    /// Parses the collection's JSON schema; a schema this cannot read checks nothing. RxDB adds
    /// its own fields (`_deleted`, `_rev`, `_meta`, `_attachments`) that messages do not carry.
    pub fn from_schema(schema: &serde_json::Value) -> Self {
        let mut rules: FieldRules = serde_json::from_value(schema.clone()).unwrap_or_default();
        let rxdb_own = |name: &str| matches!(name, "_deleted" | "_rev" | "_meta" | "_attachments");
        rules.properties.retain(|name, _| !rxdb_own(name));
        rules.required.retain(|name| !rxdb_own(name));
        rules
    }

    /// The first rule the document's fields break, said in words. A deleted document may omit
    /// required fields (a tombstone needs only its id).
    pub fn violation(
        &self,
        fields: &HashMap<Cow<'_, str>, &RawValue>,
        deleted: bool,
    ) -> Option<String> {
        if !deleted {
            if let Some(missing) = self
                .required
                .iter()
                .find(|name| !fields.contains_key(name.as_str()))
            {
                return Some(format!("the required field {missing:?} is missing"));
            }
        }
        for (name, rule) in &self.properties {
            let Some(raw) = fields.get(name.as_str()) else {
                continue;
            };
            let value = raw.get();
            if let Some(types) = &rule.types {
                if !types.allows(value) {
                    return Some(format!(
                        "field {name:?} is {} where the schema wants {}",
                        json_kind(value),
                        types.describe()
                    ));
                }
            }
            if let (Some(max), Some(b'"')) = (rule.max_length, value.as_bytes().first()) {
                let length = serde_json::from_str::<String>(value)
                    .map(|s| s.chars().count())
                    .unwrap_or(0);
                if length > max {
                    return Some(format!(
                        "field {name:?} has {length} characters where the schema allows {max}"
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> FieldRules {
        FieldRules::from_schema(&json!({
            "version": 0,
            "primaryKey": "id",
            "type": "object",
            "properties": {
                "id": { "type": "string", "maxLength": 5 },
                "age": { "type": "integer" },
                "score": { "type": ["number", "null"] },
                "tags": { "type": "array", "items": { "type": "string" } },
                "anything": {},
                "_deleted": { "type": "boolean" },
                "_meta": { "type": "object" }
            },
            "required": ["id", "age", "_deleted", "_rev", "_meta", "_attachments"]
        }))
    }

    fn check(body: &str, deleted: bool) -> Option<String> {
        let fields: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_str(body).unwrap();
        rules().violation(&fields, deleted)
    }

    #[test]
    fn accepts_what_the_schema_allows() {
        assert_eq!(
            check(
                r#"{"id":"a","age":3,"score":null,"tags":[],"anything":{"x":1}}"#,
                false
            ),
            None
        );
        assert_eq!(
            check(r#"{"id":"a","age":3.0,"score":-1.5e3,"extra":"ok"}"#, false),
            None
        );
        assert_eq!(check(r#"{"id":"a","_deleted":true}"#, true), None);
    }

    #[test]
    fn names_the_field_and_what_is_wrong() {
        assert_eq!(
            check(r#"{"id":"a","age":"3"}"#, false).unwrap(),
            r#"field "age" is a string where the schema wants integer"#
        );
        assert!(check(r#"{"id":"a","age":3.5}"#, false)
            .unwrap()
            .contains("integer"));
        assert!(check(r#"{"id":"a","age":1,"score":"x"}"#, false)
            .unwrap()
            .contains("number or null"));
        assert!(check(r#"{"id":"a","age":1,"tags":{}}"#, false)
            .unwrap()
            .contains("an object"));
        assert_eq!(
            check(r#"{"id":"a"}"#, false).unwrap(),
            r#"the required field "age" is missing"#
        );
        assert!(check(r#"{"id":"abcdéf","age":1}"#, false)
            .unwrap()
            .contains("6 characters"));
        assert_eq!(
            check(r#"{"id":"abcdé","age":1}"#, false),
            None,
            "characters, not bytes"
        );
    }

    #[test]
    fn an_unreadable_schema_checks_nothing() {
        let rules = FieldRules::from_schema(&json!({ "properties": 3 }));
        assert_eq!(rules, FieldRules::default());
    }
}
