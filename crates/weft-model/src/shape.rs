//! The shape of a typed task's input or output: its fields and what kind of JSON value each
//! holds, read from the Rust type's `Deserialize` implementation (no derive of our own, no
//! sample values). A flow built from typed tasks checks with it that what one step provides
//! is what the next one takes, when the flow is built rather than when the plan runs.
//!
//! ```
//! use weft_model::shape::{Kind, Shape};
//! #[derive(serde::Deserialize)]
//! struct Fetched { url: String, bytes: u64, etag: Option<String> }
//! let shape = Shape::of::<Fetched>().unwrap();
//! assert_eq!(shape.fields["bytes"].kind, Kind::Integer);
//! assert!(shape.fields["etag"].optional);
//! ```

use serde::de::{self, DeserializeOwned, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// What kind of JSON value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Integer,
    /// Any number.
    Float,
    /// A string (or a char).
    String,
    /// An array (or a tuple).
    Array,
    /// An object (a struct or a map).
    Object,
    /// `null` (a unit).
    Null,
    /// Anything, or what the tracer does not follow: `serde_json::Value`, enums.
    Any,
}

impl Kind {
    /// Whether a value of kind `provided` can be read as `self`.
    pub fn accepts(self, provided: Kind) -> bool {
        self == provided
            || self == Kind::Any
            || provided == Kind::Any
            || (self == Kind::Float && provided == Kind::Integer)
    }

    /// The kind's name, as errors say it: `an integer`, `a string`, …
    pub fn described(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Integer => "an integer",
            Kind::Float => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
            Kind::Null => "null",
            Kind::Any => "any value",
        }
    }
}

/// One field of a [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// What it holds.
    pub kind: Kind,
    /// Whether it may be absent or null (`Option<T>`, `#[serde(default)]` is not seen).
    pub optional: bool,
}

/// The fields of a struct, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    /// Its fields.
    pub fields: BTreeMap<String, Field>,
}

/// Why a type has no shape: it is not a struct with named fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAStruct(pub String);

impl fmt::Display for NotAStruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a typed task's input and output must be structs with named fields: {}",
            self.0
        )
    }
}

impl std::error::Error for NotAStruct {}

impl Shape {
    /// The shape of `T`, which must deserialize from a JSON object of named fields.
    pub fn of<T: DeserializeOwned>() -> Result<Shape, NotAStruct> {
        let mut recorded = None;
        let tracer = Top {
            fields: &mut recorded,
        };
        // The tracer feeds placeholder values; whatever `T` makes of them is dropped.
        let _ = T::deserialize(tracer);
        recorded.ok_or_else(|| NotAStruct(std::any::type_name::<T>().to_string()))
    }
}

/// Errors of the tracer: never shown, they only stop a type the tracer cannot follow.
#[derive(Debug)]
struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

/// The deserializer given to the type itself: it must ask for a struct (or a map).
struct Top<'a> {
    fields: &'a mut Option<Shape>,
}

impl<'de> de::Deserializer<'de> for Top<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop("not a struct".into()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let mut shape = Shape::default();
        let result = visitor.visit_map(Fields {
            names: fields,
            next: 0,
            shape: &mut shape,
            depth: 0,
        });
        *self.fields = Some(shape);
        result
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Hands the type each of its fields in turn, recording what it asks for.
struct Fields<'a> {
    names: &'static [&'static str],
    next: usize,
    shape: &'a mut Shape,
    /// How deep in nested values: a recursive type is followed only so far.
    depth: u8,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::StrDeserializer::<Stop>::new(name))
            .map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let Some(&name) = self.names.get(self.next) else {
            return Err(Stop("a value without its field".into()));
        };
        self.next += 1;
        let mut field = Field {
            kind: Kind::Any,
            optional: false,
        };
        let value = seed.deserialize(Value {
            field: &mut field,
            depth: self.depth,
        });
        self.shape.fields.insert(name.to_string(), field);
        value
    }
}

/// The deserializer of one field's value: records the kind asked for and gives a placeholder.
struct Value<'a> {
    field: &'a mut Field,
    depth: u8,
}

impl Value<'_> {
    /// Records `kind`; returns how deep the value is.
    fn set(self, kind: Kind) -> u8 {
        self.field.kind = kind;
        self.depth
    }
}

macro_rules! placeholder {
    ($($method:ident => $kind:ident, $visit:ident($value:expr);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
                let _ = self.set(Kind::$kind);
                visitor.$visit($value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Value<'_> {
    type Error = Stop;

    placeholder! {
        deserialize_bool => Bool, visit_bool(false);
        deserialize_i8 => Integer, visit_i8(0);
        deserialize_i16 => Integer, visit_i16(0);
        deserialize_i32 => Integer, visit_i32(0);
        deserialize_i64 => Integer, visit_i64(0);
        deserialize_i128 => Integer, visit_i128(0);
        deserialize_u8 => Integer, visit_u8(0);
        deserialize_u16 => Integer, visit_u16(0);
        deserialize_u32 => Integer, visit_u32(0);
        deserialize_u64 => Integer, visit_u64(0);
        deserialize_u128 => Integer, visit_u128(0);
        deserialize_f32 => Float, visit_f32(0.0);
        deserialize_f64 => Float, visit_f64(0.0);
        deserialize_char => String, visit_char('x');
        deserialize_str => String, visit_str("");
        deserialize_string => String, visit_str("");
        deserialize_bytes => Array, visit_bytes(&[]);
        deserialize_byte_buf => Array, visit_bytes(&[]);
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Null);
        visitor.visit_unit()
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Any);
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Any);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.field.optional = true;
        if self.depth > MAX_DEPTH {
            return visitor.visit_none();
        }
        // Follow the inner type for its kind; `Option<Option<T>>` stays optional.
        visitor.visit_some(Value {
            field: self.field,
            depth: self.depth + 1,
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Null);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Array);
        visitor.visit_seq(de::value::SeqDeserializer::<_, Stop>::new(
            std::iter::empty::<()>(),
        ))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        let depth = self.set(Kind::Array);
        visitor.visit_seq(Placeholders {
            left: len,
            depth: depth + 1,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::Object);
        visitor.visit_map(de::value::MapDeserializer::<_, Stop>::new(
            std::iter::empty::<((), ())>(),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // A nested struct is an object; its fields get placeholders but are not recorded.
        let depth = self.set(Kind::Object);
        if depth > MAX_DEPTH {
            return Err(Stop("a recursive type".into()));
        }
        visitor.visit_map(Fields {
            names: fields,
            next: 0,
            shape: &mut Shape::default(),
            depth: depth + 1,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // An enum may be a string or an object, by variant: anything goes.
        let depth = self.set(Kind::Any);
        let Some(&first) = variants.first() else {
            return Err(Stop("an enum without variants".into()));
        };
        visitor.visit_enum(Variant {
            name: first,
            depth: depth + 1,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let _ = self.set(Kind::String);
        visitor.visit_str("")
    }
}

/// How deep the tracer follows nested values (a recursive type stops here).
const MAX_DEPTH: u8 = 8;

/// Gives `seed` a placeholder whose kind is not recorded (inside a field's value).
fn unrecorded<'de, T: de::DeserializeSeed<'de>>(seed: T, depth: u8) -> Result<T::Value, Stop> {
    let mut ignored = Field {
        kind: Kind::Any,
        optional: false,
    };
    seed.deserialize(Value {
        field: &mut ignored,
        depth,
    })
}

/// The elements of a tuple: placeholders.
struct Placeholders {
    left: usize,
    depth: u8,
}

impl<'de> de::SeqAccess<'de> for Placeholders {
    type Error = Stop;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        unrecorded(seed, self.depth).map(Some)
    }
}

/// An enum's first variant, with placeholder contents.
struct Variant {
    name: &'static str,
    depth: u8,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = Stop;
    type Variant = Self;

    fn variant_seed<V: de::DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Stop> {
        let tag = seed.deserialize(de::value::StrDeserializer::<Stop>::new(self.name))?;
        Ok((tag, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        unrecorded(seed, self.depth)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Placeholders {
            left: len,
            depth: self.depth,
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(Fields {
            names: fields,
            next: 0,
            shape: &mut Shape::default(),
            depth: self.depth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Colour {
        Red,
        Green,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: u8,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Everything {
        flag: bool,
        count: i64,
        ratio: f64,
        name: String,
        tags: Vec<String>,
        pair: (u8, u8),
        labels: BTreeMap<String, String>,
        inner: Inner,
        maybe: Option<u32>,
        anything: serde_json::Value,
        colour: Colour,
        #[serde(rename = "renamed-field")]
        renamed: String,
    }

    #[test]
    fn reads_every_field_and_its_kind() {
        let shape = Shape::of::<Everything>().expect("a struct");
        let kinds: Vec<(&str, Kind, bool)> = shape
            .fields
            .iter()
            .map(|(n, f)| (n.as_str(), f.kind, f.optional))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("anything", Kind::Any, false),
                ("colour", Kind::Any, false),
                ("count", Kind::Integer, false),
                ("flag", Kind::Bool, false),
                ("inner", Kind::Object, false),
                ("labels", Kind::Object, false),
                ("maybe", Kind::Integer, true),
                ("name", Kind::String, false),
                ("pair", Kind::Array, false),
                ("ratio", Kind::Float, false),
                ("renamed-field", Kind::String, false),
                ("tags", Kind::Array, false),
            ]
        );
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Node {
        name: String,
        next: Option<Box<Node>>,
    }

    #[test]
    fn a_recursive_type_is_followed_only_so_far() {
        let shape = Shape::of::<Node>().expect("a struct");
        assert_eq!(shape.fields["name"].kind, Kind::String);
        assert_eq!(shape.fields["next"].kind, Kind::Object);
        assert!(shape.fields["next"].optional);
    }

    #[test]
    fn refuses_what_is_not_a_struct() {
        assert!(Shape::of::<u32>().is_err());
        assert!(Shape::of::<Vec<String>>().is_err());
        assert!(Shape::of::<(u8, u8)>().is_err());
    }

    #[test]
    fn an_integer_is_a_number_but_not_a_string() {
        assert!(Kind::Float.accepts(Kind::Integer));
        assert!(!Kind::Integer.accepts(Kind::Float));
        assert!(!Kind::String.accepts(Kind::Integer));
        assert!(Kind::Any.accepts(Kind::Array));
    }
}
