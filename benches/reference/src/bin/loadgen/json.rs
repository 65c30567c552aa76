//! Flat, one-line JSON objects for the reports (`benches/compare.sh` reads
//! them with `sed`, so values are scalars only and keys never repeat).

use std::fmt::Write as _;

/// A value that can be written as a JSON scalar.
pub(crate) trait JsonValue {
    /// Appends this value's JSON text to `out`.
    fn write_json(&self, out: &mut String);
}

impl JsonValue for u64 {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl JsonValue for usize {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl JsonValue for i64 {
    fn write_json(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl JsonValue for f64 {
    fn write_json(&self, out: &mut String) {
        if self.is_finite() {
            let _ = write!(out, "{self:.3}");
        } else {
            out.push_str("null");
        }
    }
}

impl JsonValue for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

impl JsonValue for &str {
    fn write_json(&self, out: &mut String) {
        out.push('"');
        for c in self.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

impl JsonValue for String {
    fn write_json(&self, out: &mut String) {
        self.as_str().write_json(out);
    }
}

impl<T: JsonValue> JsonValue for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(value) => value.write_json(out),
            None => out.push_str("null"),
        }
    }
}

/// Builds one flat JSON object, field by field, in insertion order.
pub(crate) struct JsonObject {
    out: String,
}

impl JsonObject {
    /// Starts an empty object.
    pub(crate) fn new() -> Self {
        Self {
            out: String::from("{"),
        }
    }

    /// Appends `"key": value`.
    pub(crate) fn field(mut self, key: &str, value: impl JsonValue) -> Self {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        key.write_json(&mut self.out);
        self.out.push(':');
        value.write_json(&mut self.out);
        self
    }

    /// Closes the object and returns its text.
    pub(crate) fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_object_is_valid_json_text() {
        let text = JsonObject::new()
            .field("n", 3u64)
            .field("x", 1.5f64)
            .field("nan", f64::NAN)
            .field("s", "a\"b")
            .field("none", None::<u64>)
            .field("ok", true)
            .finish();
        assert_eq!(
            text,
            r#"{"n":3,"x":1.500,"nan":null,"s":"a\"b","none":null,"ok":true}"#
        );
    }
}
