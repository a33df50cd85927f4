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
}
