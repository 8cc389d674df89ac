//! RFC 8785 (JCS) canonical JSON, and the number rule of FORMAT.md section 1.
//!
//! Canonicalisation itself is delegated to [`serde_json_canonicalizer`], which
//! sorts members by UTF-16 code units and formats numbers as ECMAScript does.
//! What this module adds is the refusal of numbers that a double cannot hold
//! exactly: JCS writes every number as an IEEE-754 double, so an integer
//! beyond ±2^53 would silently change value.
//!
//! ```
//! use audit_core::canonical::canonicalize;
//! let value = serde_json::json!({"b": 1.0, "a": [true, null, "é"]});
//! assert_eq!(canonicalize(&value).unwrap(), r#"{"a":[true,null,"é"],"b":1}"#);
//! ```

use serde_json::Value;

use crate::error::EventError;

/// The largest integer magnitude a double holds exactly: 2^53.
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Serialises `value` as RFC 8785 canonical JSON, after checking every number
/// in it with [`check_numbers`].
pub fn canonicalize(value: &Value) -> Result<String, EventError> {
    check_numbers(value, "$")?;
    serialize_checked(value)
}

/// Canonicalises a value whose numbers the caller has already checked.
pub(crate) fn serialize_checked<T: serde::Serialize>(value: &T) -> Result<String, EventError> {
    serde_json_canonicalizer::to_string(value).map_err(|source| EventError::NotSerializable {
        detail: source.to_string(),
    })
}

/// Checks that every integer inside `value` is exactly representable as an
/// IEEE-754 double (floats parsed by serde_json always are); `path` names
/// `value` in the error (a JSONPath such as `$.payload`). The path of the
/// offending number is only built when there is one: this runs for every
/// event built, on the producer's side.
pub fn check_numbers(value: &Value, path: &str) -> Result<(), EventError> {
    match find_unsafe_number(value) {
        None => Ok(()),
        Some((suffix, number)) => Err(EventError::UnsafeInteger {
            path: format!("{path}{suffix}"),
            number,
        }),
    }
}

/// The first number a double cannot hold, as (JSONPath suffix, number).
fn find_unsafe_number(value: &Value) -> Option<(String, String)> {
    match value {
        Value::Number(number) => is_unsafe(number).then(|| (String::new(), number.to_string())),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            find_unsafe_number(item).map(|(suffix, number)| (format!("[{index}]{suffix}"), number))
        }),
        Value::Object(members) => members.iter().find_map(|(key, item)| {
            find_unsafe_number(item).map(|(suffix, number)| (format!(".{key}{suffix}"), number))
        }),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

/// Whether a double cannot hold `number` exactly.
fn is_unsafe(number: &serde_json::Number) -> bool {
    // Without serde_json's `arbitrary_precision`, a number is a u64, an i64
    // or a finite f64. Integers beyond 2^53 are refused; so are integral
    // floats beyond 2^53 that JCS would write as such an integer (below
    // 1e21 it writes no exponent), since their canonical form would be
    // refused when read back.
    match (number.as_u64(), number.as_i64(), number.as_f64()) {
        (Some(unsigned), _, _) => unsigned > MAX_SAFE_INTEGER,
        (None, Some(signed), _) => signed.unsigned_abs() > MAX_SAFE_INTEGER,
        (None, None, Some(float)) => is_unsafe_integral_float(float),
        (None, None, None) => false,
    }
}

/// Whether JCS would write `float` as an integer literal beyond ±2^53.
fn is_unsafe_integral_float(float: f64) -> bool {
    let magnitude = float.abs();
    float.fract() == 0.0 && magnitude > MAX_SAFE_INTEGER as f64 && magnitude < 1e21
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_beyond_two_to_the_53_are_refused_with_their_path() {
        let error = canonicalize(&json!({"a": {"b": [1, 9007199254740993u64]}})).unwrap_err();
        assert_eq!(
            error,
            EventError::UnsafeInteger {
                path: "$.a.b[1]".into(),
                number: "9007199254740993".into()
            }
        );
        let error = canonicalize(&json!(-9007199254740993i64)).unwrap_err();
        assert!(
            matches!(error, EventError::UnsafeInteger { ref number, .. } if number == "-9007199254740993")
        );
    }

    #[test]
    fn integral_floats_that_jcs_writes_as_unsafe_integers_are_refused() {
        let error = canonicalize(&json!({"f": 8.802080337490749e16})).unwrap_err();
        assert!(matches!(error, EventError::UnsafeInteger { ref path, .. } if path == "$.f"));
        assert_eq!(canonicalize(&json!(1e21)).unwrap(), "1e+21");
        assert_eq!(
            canonicalize(&json!(9007199254740992.0)).unwrap(),
            "9007199254740992"
        );
    }

    #[test]
    fn two_to_the_53_itself_is_accepted() {
        assert_eq!(
            canonicalize(&json!(9007199254740992u64)).unwrap(),
            "9007199254740992"
        );
    }

    #[test]
    fn floats_use_ecmascript_formatting() {
        let value: Value = serde_json::from_str(r#"[1e21, 1e-7, -0.0, 0.5, 100.0]"#).unwrap();
        assert_eq!(canonicalize(&value).unwrap(), "[1e+21,1e-7,0,0.5,100]");
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // U+FF61 sorts after U+1F600 in UTF-8 byte order but before it in UTF-16.
        let value: Value = serde_json::from_str(r#"{"😀":1,"｡":2,"a":3}"#).unwrap();
        assert_eq!(canonicalize(&value).unwrap(), r#"{"a":3,"😀":1,"｡":2}"#);
    }
}
