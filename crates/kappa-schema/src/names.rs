//! Avro names checked before `apache-avro` parses a schema that comes from outside (an archive
//! file's header, a registry's answer, a `.avsc` file).
//!
//! `apache-avro` 0.21 validates the names of named types, their aliases and namespaces, and
//! `"type"` references with `unwrap()`: an invalid name (`"K!fkaRecord"`, one flipped bit in an
//! archive header) panics instead of returning an error. [`parse_schema`] walks the schema JSON
//! first and rejects such a name with its path, so a damaged input is an error naming where it
//! was, never a crash.

use apache_avro::Schema;
use serde_json::Value;

/// Parses `json` as an Avro schema; invalid names are errors (see the module docs).
pub fn parse_schema(json: &str) -> Result<Schema, String> {
    check_names(json)?;
    Schema::parse_str(json).map_err(|e| e.to_string())
}

/// Parses `json` as its binary encoding lays its values out, for walking encoded records: like
/// [`parse_schema`], except that a `fixed` with the `uuid` logical type stays a `fixed`.
/// `apache-avro` 0.21 parses both a `uuid` string and a `uuid` `fixed(16)` as `Schema::Uuid`,
/// which it reads as a length-prefixed string: a walk over a `fixed` UUID's 16 raw bytes would
/// take the first of them for a length.
pub fn parse_encoding(json: &str) -> Result<Schema, String> {
    check_names(json)?;
    let Ok(mut value) = serde_json::from_str::<Value>(json) else {
        return Schema::parse_str(json).map_err(|e| e.to_string());
    };
    if !plain_fixed_uuids(&mut value) {
        return Schema::parse_str(json).map_err(|e| e.to_string());
    }
    Schema::parse_str(&value.to_string()).map_err(|e| e.to_string())
}

/// Takes the `uuid` logical type off every `fixed` in the schema JSON; whether there was one.
fn plain_fixed_uuids(schema: &mut Value) -> bool {
    match schema {
        Value::Array(branches) => branches
            .iter_mut()
            .fold(false, |found, branch| plain_fixed_uuids(branch) | found),
        Value::Object(map) => {
            let mut found = false;
            if map.get("type").and_then(Value::as_str) == Some("fixed")
                && map.get("logicalType").and_then(Value::as_str) == Some("uuid")
            {
                map.remove("logicalType");
                found = true;
            }
            for key in ["type", "items", "values"] {
                if let Some(inner) = map.get_mut(key) {
                    found |= plain_fixed_uuids(inner);
                }
            }
            if let Some(Value::Array(fields)) = map.get_mut("fields") {
                for field in fields {
                    found |= plain_fixed_uuids(field);
                }
            }
            found
        }
        _ => false,
    }
}

/// A record schema's JSON with the `uuid` logical type taken off its top-level `string` fields
/// (alone or in a union with `null`), and those fields' names; `None` when it has none, or is not a record.
///
/// arrow-avro reads a `uuid` string into 16 bytes (parsing the text), which the table's
/// `string` column formats back into text: the archive replay decodes with this schema instead,
/// keeping the text as it is, and takes the batch only when every such value is already in the
/// canonical form the round trip would give (`kappa_source_replay`'s grouped decoding).
pub fn text_uuid_fields(json: &str) -> Option<(String, Vec<String>)> {
    let mut value = serde_json::from_str::<Value>(json).ok()?;
    if value.get("type").and_then(Value::as_str) != Some("record") {
        return None;
    }
    let Value::Array(fields) = value.get_mut("fields")? else {
        return None;
    };
    let mut names = Vec::new();
    for field in fields {
        let Some(Value::String(name)) = field.get("name").cloned() else {
            continue;
        };
        // Alone or beside `null` only: a column of text (or NULL), checked as a whole.
        let text = match field.get_mut("type") {
            Some(Value::Array(branches))
                if branches.len() == 2 && branches.iter().any(|b| b == "null") =>
            {
                branches.iter_mut().any(plain_string_uuid)
            }
            Some(Value::Array(_)) | None => false,
            Some(schema) => plain_string_uuid(schema),
        };
        if text {
            names.push(name);
        }
    }
    (!names.is_empty()).then(|| (value.to_string(), names))
}

/// Takes the `uuid` logical type off a `string` type object; whether it had it.
fn plain_string_uuid(schema: &mut Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    let uuid = map.get("type").and_then(Value::as_str) == Some("string")
        && map.get("logicalType").and_then(Value::as_str) == Some("uuid");
    if uuid {
        map.remove("logicalType");
    }
    uuid
}

/// The schema JSON `json` written out again (object keys sorted, a key given twice once, with its
/// last value), or `None` when it is not JSON. `apache-avro` 0.21 serializes a decimal on `fixed`
/// with its `logicalType`, `precision` and `scale` twice — a file it writes has such a header —
/// and arrow-avro refuses an object with a duplicate key.
pub fn reserialized(json: &str) -> Option<String> {
    serde_json::from_str::<Value>(json)
        .ok()
        .map(|value| value.to_string())
}

/// Checks every name, namespace, alias and type reference of the schema `json`; text that is not
/// JSON is left to the parser (which reports it without panicking).
pub fn check_names(json: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => walk(&value, "<root>"),
        Err(_) => Ok(()),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_simple_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A possibly namespace-qualified name: simple names joined by dots.
fn is_full_name(name: &str) -> bool {
    name.split('.').all(is_simple_name)
}

fn check(what: &str, value: &str, path: &str, ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path}: invalid {what} {value:?}: Avro names are [A-Za-z_][A-Za-z0-9_]* joined by dots"
        ))
    }
}

fn walk(schema: &Value, path: &str) -> Result<(), String> {
    match schema {
        Value::String(reference) => check("type name", reference, path, is_full_name(reference)),
        Value::Array(branches) => branches
            .iter()
            .enumerate()
            .try_for_each(|(i, branch)| walk(branch, &format!("{path}[{i}]"))),
        Value::Object(map) => {
            let here = match map.get("name") {
                Some(Value::String(name)) => {
                    check("name", name, path, is_full_name(name))?;
                    name.as_str()
                }
                _ => path,
            };
            if let Some(Value::String(namespace)) = map.get("namespace") {
                let ok = namespace.is_empty() || is_full_name(namespace);
                check("namespace", namespace, here, ok)?;
            }
            if let Some(Value::Array(aliases)) = map.get("aliases") {
                for alias in aliases {
                    if let Value::String(alias) = alias {
                        check("alias", alias, here, is_full_name(alias))?;
                    }
                }
            }
            if let Some(kind) = map.get("type") {
                walk(kind, here)?;
            }
            if let Some(Value::Array(fields)) = map.get("fields") {
                for field in fields {
                    walk(field, here)?;
                }
            }
            for key in ["items", "values"] {
                if let Some(inner) = map.get(key) {
                    walk(inner, &format!("{here}.{key}"))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn top_level_uuid_strings_become_text_and_nothing_else_changes() {
        let json = r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"maybe","type":["null",{"type":"string","logicalType":"uuid"}],"default":null},
            {"name":"three","type":["null","long",{"type":"string","logicalType":"uuid"}]},
            {"name":"fixed","type":{"type":"fixed","name":"F","size":16,"logicalType":"uuid"}},
            {"name":"nested","type":{"type":"record","name":"N","fields":[
                {"name":"inner","type":{"type":"string","logicalType":"uuid"}}]}},
            {"name":"plain","type":"string"}]}"#;
        let (text, names) = text_uuid_fields(json).unwrap();
        assert_eq!(names, ["id", "maybe"]);
        let value: Value = serde_json::from_str(&text).unwrap();
        let fields = value["fields"].as_array().unwrap();
        assert_eq!(fields[0]["type"], serde_json::json!({"type": "string"}));
        assert_eq!(fields[1]["type"][1], serde_json::json!({"type": "string"}));
        let original: Value = serde_json::from_str(json).unwrap();
        for kept in 2..6 {
            assert_eq!(fields[kept], original["fields"][kept], "field {kept}");
        }
        assert!(Schema::parse_str(&text).is_ok());
        // Nothing to take off, or not a record.
        assert_eq!(
            text_uuid_fields(
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#
            ),
            None
        );
        assert_eq!(
            text_uuid_fields(r#"{"type":"string","logicalType":"uuid"}"#),
            None
        );
        assert_eq!(text_uuid_fields("not json"), None);
    }
    use super::*;

    #[test]
    fn invalid_names_are_errors_not_panics() {
        let bad = [
            r#"{"type":"record","name":"K!fkaRecord","fields":[]}"#,
            r#"{"type":"record","name":"R","namespace":"a..b","aliases":["x"],"fields":[]}"#,
            r#"{"type":"record","name":"R","aliases":["no way"],"fields":[]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"K!"}}]}"#,
            r#"{"type":"array","items":{"type":"enum","name":"E-1","symbols":["A"]}}"#,
            r#"["null","b@d"]"#,
        ];
        for json in bad {
            let err = parse_schema(json).unwrap_err();
            assert!(err.contains("invalid"), "{json}: {err}");
        }
        let good = include_str!("../../../contracts/orders-value/2.avsc");
        assert!(parse_schema(good).is_ok());
        assert!(parse_schema(r#""bytes""#).is_ok());
        assert!(parse_schema("{not json").is_err());
    }

    #[test]
    fn reserializing_keeps_one_of_the_keys_apache_avro_writes_twice() {
        let json = r#"{"type":"fixed","name":"F","size":8,"logicalType":"decimal","precision":18,"scale":4}"#;
        let schema = Schema::parse_str(json).unwrap();
        let written = serde_json::to_string(&schema).unwrap();
        // What this works around (a newer apache-avro may have fixed it: then drop the helper).
        assert_eq!(written.matches(r#""precision""#).count(), 2, "{written}");
        let again = reserialized(&written).unwrap();
        assert_eq!(again.matches(r#""precision""#).count(), 1, "{again}");
        assert_eq!(Schema::parse_str(&again).unwrap(), schema);
        assert_eq!(reserialized("{not json"), None);
    }

    #[test]
    fn a_fixed_uuid_parses_as_the_fixed_it_is_encoded_as() {
        let json = r#"{"type":"record","name":"r","fields":[
            {"name":"a","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}},
            {"name":"b","type":["null","U"]},
            {"name":"c","type":{"type":"string","logicalType":"uuid"}},
            {"name":"d","type":{"type":"array","items":{"type":"fixed","name":"V","size":16,"logicalType":"uuid"}}}]}"#;
        // What apache-avro makes of it: a uuid, read as a string.
        let Schema::Record(record) = parse_schema(json).unwrap() else {
            panic!("a record")
        };
        assert_eq!(record.fields[0].schema, Schema::Uuid);
        let Schema::Record(record) = parse_encoding(json).unwrap() else {
            panic!("a record")
        };
        assert!(matches!(&record.fields[0].schema, Schema::Fixed(f) if f.size == 16));
        assert_eq!(record.fields[2].schema, Schema::Uuid);
        assert!(
            matches!(&record.fields[3].schema, Schema::Array(a) if matches!(*a.items, Schema::Fixed(_)))
        );
        assert!(parse_encoding(r#"{"type":"fixed","name":"K!","size":16}"#).is_err());
    }
}
