//! RFC 8785 (JCS) canonical JSON, and the number rule of FORMAT.md section 1.
//!
//! The canonical form is written in one pass straight into a `String`, from a
//! [`serde_json::Value`] ([`canonicalize`], [`canonicalize_into`]) or from any
//! [`serde::Serialize`] ([`canonicalize_serialize`], [`canonicalize_serialize_into`])
//! without building a `Value` first:
//!
//! - numbers are written as ECMAScript's `Number.prototype.toString` writes
//!   the double (via `ryu-js`); integers within ±2^53 are written as their
//!   decimal digits, which is what that gives for them;
//! - strings escape only `"`, `\` and the control characters U+0000 to
//!   U+001F (`\b`, `\f`, `\n`, `\r`, `\t`, else `\u00xx` in lowercase hex);
//!   everything else is written as its UTF-8 bytes;
//! - object members are sorted by the UTF-16 code units of their names
//!   ([`cmp_utf16`]), which differs from byte order only where a character
//!   beyond U+FFFF meets one of U+E000 to U+FFFF.
//!
//! The number rule: JCS writes every number as an IEEE-754 double, so an
//! integer beyond ±2^53 would silently change value; such numbers are
//! refused with the JSONPath of the first one ([`EventError::UnsafeInteger`]).
//! So are integral floats that JCS would write as such an integer (beyond
//! 2^53 and below 1e21), and non-finite floats a `Serialize` value may hold.
//!
//! The bytes are identical to those of the reference implementation
//! `serde_json_canonicalizer` (a property test checks arbitrary JSON).
//!
//! ```
//! use audit_core::canonical::{canonicalize, canonicalize_serialize};
//! let value = serde_json::json!({"b": 1.0, "a": [true, null, "é"]});
//! assert_eq!(canonicalize(&value).unwrap(), r#"{"a":[true,null,"é"],"b":1}"#);
//!
//! #[derive(serde::Serialize)]
//! struct Refusal { rule: &'static str, bytes: u32 }
//! let text = canonicalize_serialize(&Refusal { rule: "R001", bytes: 4096 }).unwrap();
//! assert_eq!(text, r#"{"bytes":4096,"rule":"R001"}"#);
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::{Map, Number, Value};

use crate::error::EventError;

/// The largest integer magnitude a double holds exactly: 2^53.
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Serialises `value` as RFC 8785 canonical JSON, refusing numbers that break
/// the number rule (with their path below `$`).
pub fn canonicalize(value: &Value) -> Result<String, EventError> {
    let mut out = String::with_capacity(128);
    canonicalize_into(value, "$", &mut out)?;
    Ok(out)
}

/// Appends the RFC 8785 canonical form of `value` to `out`; `path` names
/// `value` in errors (a JSONPath such as `$.payload`). On error `out` is left
/// as it was.
///
/// The error is exactly that of [`check_numbers`]: the first offending
/// number in the value's own member order.
pub fn canonicalize_into(value: &Value, path: &str, out: &mut String) -> Result<(), EventError> {
    let start = out.len();
    match write_value(value, out) {
        Ok(()) => Ok(()),
        Err(Refused) => {
            out.truncate(start);
            // The path is only built on this rare path, by the same rule.
            check_numbers(value, path)?;
            Err(EventError::NotSerializable {
                detail: format!("a number at {path} has no JSON form"),
            })
        }
    }
}

/// Serialises any `Serialize` value as RFC 8785 canonical JSON, with the
/// same number rule as [`canonicalize`], without building a `Value`.
///
/// Map keys may be strings, characters, booleans, integers or unit enum
/// variants (written as strings, as `serde_json` does); a value whose form
/// JSON cannot hold (a non-string map key, a non-finite float, two members
/// of one name) is refused with [`EventError::NotSerializable`].
pub fn canonicalize_serialize<T: Serialize + ?Sized>(value: &T) -> Result<String, EventError> {
    let mut out = String::with_capacity(128);
    canonicalize_serialize_into(value, "$", &mut out)?;
    Ok(out)
}

/// Appends the RFC 8785 canonical form of a `Serialize` value to `out`;
/// `path` names `value` in errors. On error `out` is left as it was.
pub fn canonicalize_serialize_into<T: Serialize + ?Sized>(
    value: &T,
    path: &str,
    out: &mut String,
) -> Result<(), EventError> {
    let start = out.len();
    let mut serializer = CanonicalSerializer {
        out: &mut *out,
        base: path,
        path: Vec::new(),
        members: Vec::new(),
        scratch: String::new(),
    };
    match value.serialize(&mut serializer) {
        Ok(()) => Ok(()),
        Err(SerError(error)) => {
            out.truncate(start);
            Err(error)
        }
    }
}

/// Appends `text` to `out` as a JCS string literal, quotes included.
pub fn write_string(text: &str, out: &mut String) {
    out.push('"');
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `index` holds an ASCII byte, so both slices end on char boundaries.
        out.push_str(&text[clean_from..index]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        clean_from = index + 1;
    }
    out.push_str(&text[clean_from..]);
    out.push('"');
}

/// Compares two member names by their UTF-16 code units, the order of
/// RFC 8785 section 3.2.3, without transcoding them.
///
/// UTF-8 byte order is code point order, which is UTF-16 order except where
/// a character beyond U+FFFF (a surrogate pair, D800–DBFF first) meets one of
/// U+E000 to U+FFFF: there the former sorts first in UTF-16.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (left, right) = (a.as_bytes(), b.as_bytes());
    match left.iter().zip(right).position(|(x, y)| x != y) {
        None => left.len().cmp(&right.len()),
        Some(index) => {
            let (x, y) = (left[index], right[index]);
            // Equal prefixes put `index` at a character start in both names or
            // inside a character in both; inside, both characters share a lead
            // byte and so a class, where byte order is UTF-16 order.
            let astral = |byte: u8| byte >= 0xf0;
            let high_bmp = |byte: u8| (0xee..=0xef).contains(&byte);
            if astral(x) && high_bmp(y) {
                Ordering::Less
            } else if high_bmp(x) && astral(y) {
                Ordering::Greater
            } else {
                x.cmp(&y)
            }
        }
    }
}

/// Checks that every integer inside `value` is exactly representable as an
/// IEEE-754 double (floats parsed by serde_json always are); `path` names
/// `value` in the error (a JSONPath such as `$.payload`). The path of the
/// offending number is only built when there is one.
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
fn is_unsafe(number: &Number) -> bool {
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

/// A number of a `Value` that breaks the number rule (the path is found afterwards).
struct Refused;

/// Writes a `Value` whose path is not tracked: errors are rare and
/// [`canonicalize_into`] finds the path again when one occurs.
fn write_value(value: &Value, out: &mut String) -> Result<(), Refused> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out)?,
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(members, out)?,
    }
    Ok(())
}

/// Writes an object's members in UTF-16 order. A `serde_json::Map` iterates in
/// byte order (or insertion order with `preserve_order`), which is checked in
/// one pass: only if it differs are the members sorted.
fn write_object(members: &Map<String, Value>, out: &mut String) -> Result<(), Refused> {
    out.push('{');
    let in_order = members
        .keys()
        .zip(members.keys().skip(1))
        .all(|(a, b)| cmp_utf16(a, b) == Ordering::Less);
    if in_order {
        for (index, (key, item)) in members.iter().enumerate() {
            write_member(index, key, item, out)?;
        }
    } else {
        let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
        sorted.sort_unstable_by(|a, b| cmp_utf16(a.0, b.0));
        for (index, (key, item)) in sorted.into_iter().enumerate() {
            write_member(index, key, item, out)?;
        }
    }
    out.push('}');
    Ok(())
}

fn write_member(index: usize, key: &str, item: &Value, out: &mut String) -> Result<(), Refused> {
    if index > 0 {
        out.push(',');
    }
    write_string(key, out);
    out.push(':');
    write_value(item, out)
}

/// Writes a `serde_json::Number` by the number rule (same classes as [`is_unsafe`]).
fn write_number(number: &Number, out: &mut String) -> Result<(), Refused> {
    if let Some(unsigned) = number.as_u64() {
        write_safe_integer(false, unsigned, out)
    } else if let Some(signed) = number.as_i64() {
        write_safe_integer(signed < 0, signed.unsigned_abs(), out)
    } else if let Some(float) = number.as_f64() {
        write_float(float, out)
    } else {
        Err(Refused)
    }
}

/// Writes an integer of magnitude at most 2^53 as ECMAScript would write the
/// double holding it: its decimal digits (never `-0`).
fn write_safe_integer(negative: bool, magnitude: u64, out: &mut String) -> Result<(), Refused> {
    if magnitude > MAX_SAFE_INTEGER {
        return Err(Refused);
    }
    if negative && magnitude != 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = magnitude;
    loop {
        start -= 1;
        // `rest % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits[start..]
        .iter()
        .for_each(|&digit| out.push(char::from(digit)));
    Ok(())
}

/// Writes a finite double as ECMAScript's `Number.prototype.toString` does.
fn write_float(float: f64, out: &mut String) -> Result<(), Refused> {
    if !float.is_finite() || is_unsafe_integral_float(float) {
        return Err(Refused);
    }
    let mut buffer = ryu_js::Buffer::new();
    out.push_str(buffer.format_finite(float));
    Ok(())
}

/// The error of [`CanonicalSerializer`]: an [`EventError`] with its path.
#[derive(Debug)]
struct SerError(EventError);

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        SerError(EventError::NotSerializable {
            detail: message.to_string(),
        })
    }
}

/// One step of the path from the root to the value being written.
enum Step {
    Key(Cow<'static, str>),
    Index(usize),
}

/// A serde `Serializer` that writes RFC 8785 canonical JSON into a `String`.
///
/// Object members are written where they come, then, if their names were not
/// already in UTF-16 order, the object's bytes are rearranged once at its end.
struct CanonicalSerializer<'o> {
    out: &'o mut String,
    /// JSONPath of the root value, e.g. `$.payload`.
    base: &'o str,
    path: Vec<Step>,
    /// The members of every open object, innermost last (one allocation for
    /// the whole value instead of one per object).
    members: Vec<Member>,
    /// Where an object's members are copied while they are put in order.
    scratch: String,
}

impl<'o> CanonicalSerializer<'o> {
    /// The JSONPath of the value being written.
    fn path(&self) -> String {
        let mut path = self.base.to_owned();
        for step in &self.path {
            match step {
                Step::Key(key) => {
                    path.push('.');
                    path.push_str(key);
                }
                Step::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    fn unsafe_number(&self, number: impl fmt::Display) -> SerError {
        SerError(EventError::UnsafeInteger {
            path: self.path(),
            number: number.to_string(),
        })
    }

    fn not_serializable(&self, what: &str) -> SerError {
        SerError(EventError::NotSerializable {
            detail: format!("{what} at {}", self.path()),
        })
    }

    fn integer(&mut self, negative: bool, magnitude: u128) -> Result<(), SerError> {
        match u64::try_from(magnitude) {
            Ok(small) if small <= MAX_SAFE_INTEGER => {
                // Within range: cannot be refused.
                write_safe_integer(negative, small, self.out)
                    .map_err(|Refused| self.unsafe_number(magnitude))
            }
            _ => Err(self.unsafe_number(format_args!(
                "{}{magnitude}",
                if negative { "-" } else { "" }
            ))),
        }
    }

    fn float(&mut self, float: f64) -> Result<(), SerError> {
        if !float.is_finite() {
            return Err(self.not_serializable(&format!("the non-finite number {float}")));
        }
        // The number as serde_json writes it, as in `check_numbers`.
        write_float(float, self.out).map_err(|Refused| match Number::from_f64(float) {
            Some(number) => self.unsafe_number(number),
            None => self.unsafe_number(float),
        })
    }

    /// Writes a JSON text given by serde_json's private tokens (`RawValue`,
    /// `arbitrary_precision` numbers) in canonical form.
    fn embedded_json(&mut self, json: &str) -> Result<(), SerError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|error| self.not_serializable(&format!("invalid embedded JSON ({error})")))?;
        let path = self.path();
        canonicalize_into(&value, &path, self.out).map_err(SerError)
    }

    fn begin_object(&mut self) -> ObjectWriter<'_, 'o> {
        self.out.push('{');
        let start = self.out.len();
        let first_member = self.members.len();
        ObjectWriter {
            serializer: self,
            start,
            first_member,
            pending_key: None,
            embedded: None,
        }
    }

    /// `{"variant":` of an externally tagged enum variant.
    fn begin_variant(&mut self, variant: &'static str) {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        self.path.push(Step::Key(Cow::Borrowed(variant)));
    }

    fn end_variant(&mut self) {
        self.path.pop();
        self.out.push('}');
    }
}

const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'s, 'o> ser::Serializer for &'s mut CanonicalSerializer<'o> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = ArrayWriter<'s, 'o>;
    type SerializeTuple = ArrayWriter<'s, 'o>;
    type SerializeTupleStruct = ArrayWriter<'s, 'o>;
    type SerializeTupleVariant = ArrayWriter<'s, 'o>;
    type SerializeMap = ObjectWriter<'s, 'o>;
    type SerializeStruct = ObjectWriter<'s, 'o>;
    type SerializeStructVariant = ObjectWriter<'s, 'o>;

    fn serialize_bool(self, value: bool) -> Result<(), SerError> {
        self.out.push_str(if value { "true" } else { "false" });
        Ok(())
    }

    fn serialize_i8(self, value: i8) -> Result<(), SerError> {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i16(self, value: i16) -> Result<(), SerError> {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i32(self, value: i32) -> Result<(), SerError> {
        self.serialize_i64(i64::from(value))
    }

    fn serialize_i64(self, value: i64) -> Result<(), SerError> {
        self.integer(value < 0, u128::from(value.unsigned_abs()))
    }

    fn serialize_i128(self, value: i128) -> Result<(), SerError> {
        self.integer(value < 0, value.unsigned_abs())
    }

    fn serialize_u8(self, value: u8) -> Result<(), SerError> {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u16(self, value: u16) -> Result<(), SerError> {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u32(self, value: u32) -> Result<(), SerError> {
        self.serialize_u64(u64::from(value))
    }

    fn serialize_u64(self, value: u64) -> Result<(), SerError> {
        self.integer(false, u128::from(value))
    }

    fn serialize_u128(self, value: u128) -> Result<(), SerError> {
        self.integer(false, value)
    }

    fn serialize_f32(self, value: f32) -> Result<(), SerError> {
        self.float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), SerError> {
        self.float(value)
    }

    fn serialize_char(self, value: char) -> Result<(), SerError> {
        write_string(value.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), SerError> {
        write_string(value, self.out);
        Ok(())
    }

    /// Bytes are written as an array of numbers, as `serde_json` does.
    fn serialize_bytes(self, value: &[u8]) -> Result<(), SerError> {
        self.out.push('[');
        for (index, byte) in value.iter().enumerate() {
            if index > 0 {
                self.out.push(',');
            }
            write_safe_integer(false, u64::from(*byte), self.out)
                .map_err(|Refused| self.unsafe_number(byte))?;
        }
        self.out.push(']');
        Ok(())
    }

    fn serialize_none(self) -> Result<(), SerError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), SerError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), SerError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), SerError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.begin_variant(variant);
        value.serialize(&mut *self)?;
        self.end_variant();
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<ArrayWriter<'s, 'o>, SerError> {
        self.out.push('[');
        Ok(ArrayWriter {
            serializer: self,
            index: 0,
            variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<ArrayWriter<'s, 'o>, SerError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ArrayWriter<'s, 'o>, SerError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<ArrayWriter<'s, 'o>, SerError> {
        self.begin_variant(variant);
        self.out.push('[');
        Ok(ArrayWriter {
            serializer: self,
            index: 0,
            variant: true,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<ObjectWriter<'s, 'o>, SerError> {
        Ok(self.begin_object())
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<ObjectWriter<'s, 'o>, SerError> {
        if name == RAW_VALUE_TOKEN || name == NUMBER_TOKEN {
            let first_member = self.members.len();
            return Ok(ObjectWriter {
                serializer: self,
                start: 0,
                first_member,
                pending_key: None,
                embedded: Some(String::new()),
            });
        }
        Ok(self.begin_object())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<ObjectWriter<'s, 'o>, SerError> {
        self.begin_variant(variant);
        Ok(self.begin_object())
    }
}

/// Writes the elements of an array (of a tuple variant when `variant`).
struct ArrayWriter<'s, 'o> {
    serializer: &'s mut CanonicalSerializer<'o>,
    index: usize,
    variant: bool,
}

impl ArrayWriter<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        if self.index > 0 {
            self.serializer.out.push(',');
        }
        self.serializer.path.push(Step::Index(self.index));
        value.serialize(&mut *self.serializer)?;
        self.serializer.path.pop();
        self.index += 1;
        Ok(())
    }

    fn finish(self) -> Result<(), SerError> {
        self.serializer.out.push(']');
        if self.variant {
            self.serializer.end_variant();
        }
        Ok(())
    }
}

impl ser::SerializeSeq for ArrayWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTuple for ArrayWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for ArrayWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for ArrayWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

/// One member written so far: its name and where `"name":value` lies in the output.
struct Member {
    key: Cow<'static, str>,
    bytes: Range<usize>,
}

/// Writes the members of an object (of a struct variant when inside one),
/// sorting them at the end if they did not come in UTF-16 order.
struct ObjectWriter<'s, 'o> {
    serializer: &'s mut CanonicalSerializer<'o>,
    /// Where the first member starts in the output (after `{`).
    start: usize,
    /// Where this object's members start in the serializer's member stack.
    first_member: usize,
    pending_key: Option<Cow<'static, str>>,
    /// `Some` for serde_json's private tokens: the embedded JSON text.
    embedded: Option<String>,
}

impl ObjectWriter<'_, '_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), SerError> {
        let out = &mut *self.serializer.out;
        if self.serializer.members.len() > self.first_member {
            out.push(',');
        }
        let begin = out.len();
        write_string(&key, out);
        out.push(':');
        self.serializer.path.push(Step::Key(key));
        value.serialize(&mut *self.serializer)?;
        let key = match self.serializer.path.pop() {
            Some(Step::Key(key)) => key,
            _ => Cow::Borrowed(""),
        };
        let end = self.serializer.out.len();
        self.serializer.members.push(Member {
            key,
            bytes: begin..end,
        });
        Ok(())
    }

    /// Closes the object, moving its members into UTF-16 order if needed.
    fn finish(mut self, variant: bool) -> Result<(), SerError> {
        if let Some(json) = self.embedded.take() {
            return self.serializer.embedded_json(&json);
        }
        let serializer = &mut *self.serializer;
        let members = &mut serializer.members[self.first_member..];
        let in_order = members
            .windows(2)
            .all(|pair| cmp_utf16(&pair[0].key, &pair[1].key) == Ordering::Less);
        if !in_order {
            members.sort_by(|a, b| cmp_utf16(&a.key, &b.key));
            if let Some(pair) = members.windows(2).find(|pair| pair[0].key == pair[1].key) {
                let detail = format!("duplicate object member {:?}", pair[0].key);
                return Err(serializer.not_serializable(&detail));
            }
            let scratch = &mut serializer.scratch;
            scratch.clear();
            scratch.push_str(&serializer.out[self.start..]);
            serializer.out.truncate(self.start);
            for (index, member) in members.iter().enumerate() {
                if index > 0 {
                    serializer.out.push(',');
                }
                let range = member.bytes.start - self.start..member.bytes.end - self.start;
                serializer.out.push_str(&scratch[range]);
            }
        }
        serializer.members.truncate(self.first_member);
        self.serializer.out.push('}');
        if variant {
            self.serializer.end_variant();
        }
        Ok(())
    }
}

impl ser::SerializeMap for ObjectWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        match key.serialize(KeySerializer) {
            Ok(key) => {
                self.pending_key = Some(Cow::Owned(key));
                Ok(())
            }
            Err(KeyRefused(what)) => Err(self
                .serializer
                .not_serializable(&format!("a map key that is {what}, not a string"))),
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        match self.pending_key.take() {
            Some(key) => self.member(key, value),
            None => Err(self
                .serializer
                .not_serializable("a map value without a key")),
        }
    }

    fn end(self) -> Result<(), SerError> {
        self.finish(false)
    }
}

impl ser::SerializeStruct for ObjectWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        if let Some(embedded) = self.embedded.as_mut() {
            // serde_json's tokens carry their JSON text as one string field.
            return match value.serialize(KeySerializer) {
                Ok(text) => {
                    *embedded = text;
                    Ok(())
                }
                Err(KeyRefused(what)) => Err(self
                    .serializer
                    .not_serializable(&format!("embedded JSON that is {what}"))),
            };
        }
        self.member(Cow::Borrowed(key), value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish(false)
    }
}

impl ser::SerializeStructVariant for ObjectWriter<'_, '_> {
    type Ok = ();
    type Error = SerError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.member(Cow::Borrowed(key), value)
    }

    fn end(self) -> Result<(), SerError> {
        self.finish(true)
    }
}

/// Why a map key was refused: what it is.
#[derive(Debug)]
struct KeyRefused(&'static str);

impl fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map key that is {}, not a string", self.0)
    }
}

impl std::error::Error for KeyRefused {}

impl ser::Error for KeyRefused {
    fn custom<T: fmt::Display>(_message: T) -> Self {
        KeyRefused("refused by its Serialize")
    }
}

/// Turns a map key into its member name, as `serde_json` does for the
/// types it accepts (floats are refused: their key form is not JCS's).
struct KeySerializer;

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = KeyRefused;
    type SerializeSeq = Impossible<String, KeyRefused>;
    type SerializeTuple = Impossible<String, KeyRefused>;
    type SerializeTupleStruct = Impossible<String, KeyRefused>;
    type SerializeTupleVariant = Impossible<String, KeyRefused>;
    type SerializeMap = Impossible<String, KeyRefused>;
    type SerializeStruct = Impossible<String, KeyRefused>;
    type SerializeStructVariant = Impossible<String, KeyRefused>;

    fn serialize_bool(self, value: bool) -> Result<String, KeyRefused> {
        Ok(if value { "true" } else { "false" }.to_owned())
    }

    fn serialize_i8(self, value: i8) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_i16(self, value: i16) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_i32(self, value: i32) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_i64(self, value: i64) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_i128(self, value: i128) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_u8(self, value: u8) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_u16(self, value: u16) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_u32(self, value: u32) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_u64(self, value: u64) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_u128(self, value: u128) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_f32(self, _value: f32) -> Result<String, KeyRefused> {
        Err(KeyRefused("a float"))
    }

    fn serialize_f64(self, _value: f64) -> Result<String, KeyRefused> {
        Err(KeyRefused("a float"))
    }

    fn serialize_char(self, value: char) -> Result<String, KeyRefused> {
        Ok(value.to_string())
    }

    fn serialize_str(self, value: &str) -> Result<String, KeyRefused> {
        Ok(value.to_owned())
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<String, KeyRefused> {
        Err(KeyRefused("bytes"))
    }

    fn serialize_none(self) -> Result<String, KeyRefused> {
        Err(KeyRefused("null"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, KeyRefused> {
        Err(KeyRefused("an option"))
    }

    fn serialize_unit(self) -> Result<String, KeyRefused> {
        Err(KeyRefused("null"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, KeyRefused> {
        Err(KeyRefused("a unit struct"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, KeyRefused> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, KeyRefused> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, KeyRefused> {
        Err(KeyRefused("an enum variant with data"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, KeyRefused> {
        Err(KeyRefused("an array"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, KeyRefused> {
        Err(KeyRefused("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, KeyRefused> {
        Err(KeyRefused("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, KeyRefused> {
        Err(KeyRefused("an enum variant with data"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, KeyRefused> {
        Err(KeyRefused("an object"))
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, KeyRefused> {
        Err(KeyRefused("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, KeyRefused> {
        Err(KeyRefused("an enum variant with data"))
    }
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
        assert_eq!(
            canonicalize(&json!(-9007199254740992i64)).unwrap(),
            "-9007199254740992"
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

    #[test]
    fn cmp_utf16_agrees_with_transcoding_on_edge_pairs() {
        let names = [
            "",
            "a",
            "ab",
            "\u{7f}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{ff61}",
            "\u{ffff}",
            "\u{10000}",
            "\u{1f600}",
            "\u{10ffff}",
            "a\u{e000}",
            "a\u{1f600}",
            "\u{e000}\u{0}",
            "\u{1f600}\u{0}",
        ];
        for a in names {
            for b in names {
                let expected = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(cmp_utf16(a, b), expected, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn strings_escape_only_what_jcs_escapes() {
        let mut out = String::new();
        write_string("\"\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é😀", &mut out);
        assert_eq!(out, "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é😀\"");
    }

    #[test]
    fn serialize_values_are_refused_with_their_path() {
        #[derive(serde::Serialize)]
        struct Inner {
            big: u64,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            items: Vec<Inner>,
        }
        let error = canonicalize_serialize(&Outer {
            items: vec![Inner { big: 1 }, Inner { big: u64::MAX }],
        })
        .unwrap_err();
        assert_eq!(
            error,
            EventError::UnsafeInteger {
                path: "$.items[1].big".into(),
                number: u64::MAX.to_string()
            }
        );
        let error = canonicalize_serialize(&vec![f64::NAN]).unwrap_err();
        assert!(
            matches!(error, EventError::NotSerializable { ref detail } if detail.contains("$[0]")),
            "{error:?}"
        );
    }

    #[test]
    fn serialize_sorts_struct_fields_and_refuses_duplicates() {
        #[derive(serde::Serialize)]
        struct Fields {
            zeta: u8,
            alpha: Vec<(u8, bool)>,
            mid: Option<char>,
        }
        let text = canonicalize_serialize(&Fields {
            zeta: 1,
            alpha: vec![(2, true)],
            mid: Some('x'),
        })
        .unwrap();
        assert_eq!(text, r#"{"alpha":[[2,true]],"mid":"x","zeta":1}"#);

        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("k", &1)?;
                map.serialize_entry("k", &2)?;
                map.end()
            }
        }
        let error = canonicalize_serialize(&Twice).unwrap_err();
        assert!(matches!(error, EventError::NotSerializable { .. }));
    }

    #[test]
    fn serialize_enums_are_externally_tagged_like_serde_json() {
        #[derive(serde::Serialize)]
        enum Shape {
            Unit,
            New(i32),
            Tuple(u8, u8),
            Named { z: u8, a: u8 },
        }
        let shapes = vec![
            Shape::Unit,
            Shape::New(-3),
            Shape::Tuple(1, 2),
            Shape::Named { z: 1, a: 2 },
        ];
        let expected = canonicalize(&serde_json::to_value(&shapes).unwrap()).unwrap();
        assert_eq!(canonicalize_serialize(&shapes).unwrap(), expected);
        assert_eq!(
            expected,
            r#"["Unit",{"New":-3},{"Tuple":[1,2]},{"Named":{"a":2,"z":1}}]"#
        );
    }

    #[test]
    fn raw_values_are_canonicalised_not_copied() {
        let raw =
            serde_json::value::RawValue::from_string(r#"{"b": 1.50, "a": 1e2}"#.into()).unwrap();
        assert_eq!(
            canonicalize_serialize(&raw).unwrap(),
            r#"{"a":100,"b":1.5}"#
        );
    }
}
