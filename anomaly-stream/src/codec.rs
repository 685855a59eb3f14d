//! Codecs: how typed keys and values become Kafka message bytes and back.
//!
//! A [`Codec`] is a value, not a trait bound on the data type, so one type can travel as JSON on
//! one topic (human-readable, for integrations) and as postcard on another (compact, for internal
//! topics), and the runtime can hold codecs as `Box<dyn Codec<T>>`.
//!
//! Decoding never panics: bytes from a topic are untrusted, so every failure is an
//! [`Error::Decode`] the runtime can route to a dead-letter topic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Encodes values of type `T` to bytes and decodes them back.
pub trait Codec<T>: Send + Sync {
    /// Appends the encoding of `value` to `buf`.
    ///
    /// Appending (rather than returning a fresh `Vec`) lets the runtime reuse one buffer per
    /// producer; clear it before each record if it holds a previous one.
    fn encode(&self, value: &T, buf: &mut Vec<u8>) -> Result<()>;

    /// Decodes one value that occupies all of `bytes`; anything unparsable, truncated or followed
    /// by trailing bytes is an [`Error::Decode`].
    fn decode(&self, bytes: &[u8]) -> Result<T>;

    /// A short stable name for errors, metrics and logs, e.g. `"json"`.
    fn name(&self) -> &'static str;
}

/// JSON via `serde_json`, for any serde type: readable and interoperable, larger and slower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for JsonCodec {
    fn encode(&self, value: &T, buf: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(buf, value).map_err(|e| Error::Encode {
            codec: "json",
            message: e.to_string(),
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            codec: "json",
            message: e.to_string(),
        })
    }

    fn name(&self) -> &'static str {
        "json"
    }
}

/// [postcard](https://docs.rs/postcard) for any serde type: compact and fast, but not
/// self-describing, so both sides must agree on the exact type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostcardCodec;

impl<T: Serialize + DeserializeOwned> Codec<T> for PostcardCodec {
    fn encode(&self, value: &T, buf: &mut Vec<u8>) -> Result<()> {
        postcard::to_io(value, buf)
            .map(|_| ())
            .map_err(|e| Error::Encode {
                codec: "postcard",
                message: e.to_string(),
            })
    }

    fn decode(&self, bytes: &[u8]) -> Result<T> {
        // `take_from_bytes` rather than `from_bytes`: postcard is not self-describing, so bytes
        // left over usually mean the producer used a different type, which must not pass silently.
        let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| Error::Decode {
            codec: "postcard",
            message: e.to_string(),
        })?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(Error::Decode {
                codec: "postcard",
                message: format!("{} trailing bytes after the value", rest.len()),
            })
        }
    }

    fn name(&self) -> &'static str {
        "postcard"
    }
}

/// Raw UTF-8 text for `String` keys or values (no quotes, unlike JSON): how Kafka tools and most
/// producers write string keys such as host names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Codec;

impl Codec<String> for Utf8Codec {
    fn encode(&self, value: &String, buf: &mut Vec<u8>) -> Result<()> {
        buf.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Decode {
            codec: "utf8",
            message: e.to_string(),
        })
    }

    fn name(&self) -> &'static str {
        "utf8"
    }
}

/// For keys a pipeline does not read: any bytes decode to `()`, and `()` encodes to nothing.
/// Saves decoding (and allocating) a key per record where the value names its entity anyway,
/// as the detector's samples do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCodec;

impl Codec<()> for SkipCodec {
    fn encode(&self, _value: &(), _buf: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    fn decode(&self, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "skip"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        host: String,
        timestamp_ms: i64,
        values: Vec<f32>,
        tags: BTreeMap<String, String>,
        label: Option<bool>,
    }

    fn sample() -> Sample {
        Sample {
            host: "web-1".into(),
            timestamp_ms: -1_700_000_000_123,
            values: vec![0.5, -1.25, f32::MAX],
            tags: BTreeMap::from([("dc".into(), "eu".into())]),
            label: Some(true),
        }
    }

    fn codecs() -> Vec<Box<dyn Codec<Sample>>> {
        vec![Box::new(JsonCodec), Box::new(PostcardCodec)]
    }

    #[test]
    fn round_trip() {
        for codec in codecs() {
            let mut buf = Vec::new();
            codec.encode(&sample(), &mut buf).unwrap();
            assert_eq!(codec.decode(&buf).unwrap(), sample(), "{}", codec.name());
        }
    }

    #[test]
    fn encode_appends_so_buffers_can_be_reused() {
        for codec in codecs() {
            let mut once = Vec::new();
            codec.encode(&sample(), &mut once).unwrap();
            let mut buf = b"xy".to_vec();
            codec.encode(&sample(), &mut buf).unwrap();
            assert_eq!(&buf[..2], b"xy");
            assert_eq!(&buf[2..], &once[..]);
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        for codec in codecs() {
            for bytes in [
                &b""[..],
                b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                b"{\"host\":",
            ] {
                match codec.decode(bytes) {
                    Err(Error::Decode {
                        codec: name,
                        message,
                    }) => {
                        assert_eq!(name, codec.name());
                        assert!(!message.is_empty());
                    }
                    other => panic!("{}: expected a decode error, got {other:?}", codec.name()),
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_postcard_is_an_error() {
        let mut buf = Vec::new();
        PostcardCodec.encode(&sample(), &mut buf).unwrap();
        for len in 0..buf.len() {
            let result: Result<Sample> = PostcardCodec.decode(&buf[..len]);
            assert!(
                matches!(
                    result,
                    Err(Error::Decode {
                        codec: "postcard",
                        ..
                    })
                ),
                "len {len}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        for codec in codecs() {
            let mut buf = Vec::new();
            codec.encode(&sample(), &mut buf).unwrap();
            buf.extend_from_slice(b"#junk");
            assert!(
                matches!(codec.decode(&buf), Err(Error::Decode { .. })),
                "{}",
                codec.name()
            );
        }
    }

    #[test]
    fn unserializable_value_is_an_encode_error() {
        // JSON object keys must be strings; a tuple key cannot be written.
        let value = BTreeMap::from([((1u8, 2u8), 3u8)]);
        let mut buf = Vec::new();
        assert!(matches!(
            JsonCodec.encode(&value, &mut buf),
            Err(Error::Encode { codec: "json", .. })
        ));
    }

    #[test]
    fn skipped_keys_decode_from_any_bytes_and_encode_to_none() {
        for bytes in [&b""[..], b"web-1", &[0xff, 0xfe]] {
            assert_eq!(SkipCodec.decode(bytes).unwrap(), ());
        }
        let mut buf = b"kept".to_vec();
        SkipCodec.encode(&(), &mut buf).unwrap();
        assert_eq!(buf, b"kept");
    }
}
