//! CloudEvents over AMQP 0-9-1: the RabbitMQ protocol binding of DESIGN.md.
//!
//! Binary content mode on output: every attribute except `datacontenttype` is a message header
//! named `ce-<attribute>`, `datacontenttype` is the `content_type` property and the body is the
//! data. On input, binary mode and structured mode (`application/cloudevents+json`) are both
//! accepted. Built on the cloudevents-sdk's `Event` and its `message` visitor traits, so the SDK
//! does the attribute validation (required attributes, time format) for both directions.
//!
//! This module only maps events; it does not set AMQP routing properties (`message_id`,
//! `correlation_id`, `reply_to`, persistence): the publisher does.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use cloudevents::event::{Data, SpecVersion};
use cloudevents::message::{
    BinaryDeserializer, BinarySerializer, Encoding, MessageAttributeValue, MessageDeserializer,
    StructuredDeserializer, StructuredSerializer,
};
use cloudevents::{AttributesReader, Event};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// Prefix of every CloudEvents attribute header in binary content mode.
pub const HEADER_PREFIX: &str = "ce-";
/// Content type of a structured-mode event in the JSON event format.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
const STRUCTURED_PREFIX: &str = "application/cloudevents";
const SPECVERSION_HEADER: &str = "ce-specversion";

/// Why a message is not a CloudEvent Surge can take. Its text is the reason logged and kept with
/// a dead-lettered message, so it names the offending part.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error(
        "not a CloudEvent: no `ce-specversion` header and content type {0:?} is not structured mode"
    )]
    NotACloudEvent(Option<String>),
    #[error("unsupported specversion {0:?}: Surge takes CloudEvents 1.0")]
    UnsupportedSpecVersion(String),
    #[error("unsupported structured content type {0:?}: only {STRUCTURED_JSON} is accepted")]
    UnsupportedStructuredFormat(String),
    #[error("header `{name}` has a value that is not valid UTF-8 text")]
    HeaderNotText { name: String },
    #[error("header `{name}` has an AMQP type a CloudEvents attribute cannot have")]
    HeaderType { name: String },
    #[error("invalid CloudEvent: {0}")]
    Invalid(#[from] cloudevents::message::Error),
    #[error("data is not JSON (datacontenttype {content_type:?}): {reason}")]
    DataNotJson {
        content_type: Option<String>,
        reason: String,
    },
    #[error("data Surge cannot store: {0}")]
    Unstorable(String),
}

/// An AMQP message body with the properties that carry a CloudEvent.
#[derive(Debug, Clone)]
pub struct AmqpMessage {
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl AmqpMessage {
    /// Stamps the broker user that publishes it as `user_id` (RabbitMQ refuses it from any
    /// other user): how a receiver knows who sent it (see `broker::Senders`).
    pub fn sent_by(mut self, user: Option<&str>) -> Self {
        if let Some(user) = user {
            self.properties = self.properties.with_user_id(user.into());
        }
        self
    }

    /// Stamps the job id as `message_id` and `correlation_id`: what a reply is matched by.
    pub fn with_job_id(mut self, id: &crate::job::JobId) -> Self {
        // A UUID always fits a short string.
        let id = lapin::types::ShortString::from(id.to_string());
        self.properties = self
            .properties
            .with_message_id(id.clone())
            .with_correlation_id(id);
        self
    }
}

/// Encodes `event` in binary content mode.
pub fn encode(event: Event) -> Result<AmqpMessage, BindingError> {
    Ok(event.deserialize_binary(BinaryEncoder::default())?)
}

/// Decodes a delivered message (binary or structured mode) into an event.
pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Event, BindingError> {
    let content_type = properties.content_type().as_ref().map(|c| c.as_str());
    if let Some(ct) = content_type.filter(|ct| ct.starts_with(STRUCTURED_PREFIX)) {
        let mime = ct.split(';').next().unwrap_or(ct).trim();
        if mime != STRUCTURED_JSON {
            return Err(BindingError::UnsupportedStructuredFormat(ct.to_owned()));
        }
        let event: Event = serde_json::from_slice(body)
            .map_err(|e| BindingError::Invalid(cloudevents::message::Error::from(e)))?;
        if event.specversion() != SpecVersion::V10 {
            return Err(BindingError::UnsupportedSpecVersion(
                event.specversion().to_string(),
            ));
        }
        return Ok(event);
    }
    let headers = properties.headers().as_ref();
    let Some(spec) = headers.and_then(|h| h.inner().get(SPECVERSION_HEADER)) else {
        return Err(BindingError::NotACloudEvent(
            content_type.map(str::to_owned),
        ));
    };
    let spec = header_text(SPECVERSION_HEADER, spec)?;
    if spec != "1.0" {
        return Err(BindingError::UnsupportedSpecVersion(spec));
    }
    let delivery = BinaryDecoder {
        headers,
        content_type,
        body,
    };
    // Header types are checked before the SDK sees them, so its errors are only about content.
    delivery.check_header_types()?;
    Ok(MessageDeserializer::into_event(delivery)?)
}

/// The event's data as a job's input, where data enters Surge (`POST /events`, a runtime's
/// delivery): JSON (`json_data`) that Postgres can store and hand back (`storable`).
pub fn json_input(event: &Event) -> Result<serde_json::Value, BindingError> {
    let value = json_data(event)?;
    storable(&value).map_err(BindingError::Unstorable)?;
    Ok(value)
}

/// The event's data as JSON, the only data Surge's handlers take. No data is `null`.
pub fn json_data(event: &Event) -> Result<serde_json::Value, BindingError> {
    let content_type = event.datacontenttype().map(str::to_owned);
    if let Some(ct) = &content_type {
        let mime = ct.split(';').next().unwrap_or(ct).trim();
        if mime != "application/json" && mime != "text/json" && !mime.ends_with("+json") {
            return Err(BindingError::DataNotJson {
                content_type,
                reason: "the content type is not JSON".into(),
            });
        }
    }
    let not_json = |reason: String| BindingError::DataNotJson {
        content_type: content_type.clone(),
        reason,
    };
    let value = match event.data() {
        None => serde_json::Value::Null,
        Some(Data::Json(v)) => v.clone(),
        Some(Data::Binary(b)) => serde_json::from_slice(b).map_err(|e| not_json(e.to_string()))?,
        Some(Data::String(s)) => serde_json::from_str(s).map_err(|e| not_json(e.to_string()))?,
    };
    Ok(value)
}

/// The largest magnitude of a JSON number Surge stores. Postgres keeps `jsonb` numbers as
/// exact decimals and prints one near `f64::MAX` as a 309-digit integer that JSON parsers
/// (serde_json among them) reject as out of range: such a job could be stored but never read
/// back. Refusing them at the door keeps every stored document readable.
pub const MAX_NUMBER: f64 = 1e308;

/// Whether Postgres can store `value` and hand it back: every number within ±`MAX_NUMBER`,
/// and no U+0000 (NUL) in a string or a member name (`jsonb` refuses it). The error names the
/// first field that is not, as a JSON pointer (`/items/3/name`).
pub fn storable(value: &serde_json::Value) -> Result<(), String> {
    check_storable(value, &mut String::new())
}

fn check_storable(value: &serde_json::Value, path: &mut String) -> Result<(), String> {
    use serde_json::Value;
    let at = |path: &str| {
        if path.is_empty() {
            "the value".to_owned()
        } else {
            format!("the field {path}")
        }
    };
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.abs() > MAX_NUMBER => Err(format!(
                "{} is the number {n}, beyond ±1e308, which Surge does not store",
                at(path)
            )),
            _ => Ok(()),
        },
        Value::String(s) if s.contains('\0') => Err(format!(
            "{} holds U+0000 (NUL), which Surge does not store",
            at(path)
        )),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("/{i}"));
            let checked = check_storable(item, path);
            path.truncate(len);
            checked
        }),
        Value::Object(members) => members.iter().try_for_each(|(name, member)| {
            let len = path.len();
            // JSON pointer escapes (RFC 6901).
            path.push('/');
            path.push_str(&name.replace('~', "~0").replace('/', "~1"));
            let checked = if name.contains('\0') {
                Err(format!(
                    "a member name at {} holds U+0000 (NUL), which Surge does not store",
                    at(&path[..len])
                ))
            } else {
                check_storable(member, path)
            };
            path.truncate(len);
            checked
        }),
        _ => Ok(()),
    }
}

/// An event in structured mode (JSON), its data as JSON: an event decoded from the broker
/// holds its data as bytes, which would otherwise serialize as `data_base64`.
pub fn structured_json(mut event: Event) -> Result<String, serde_json::Error> {
    if let Ok(data) = json_data(&event) {
        event.set_data("application/json", data);
    }
    serde_json::to_string(&event)
}

/// RFC 3339 in UTC with `Z`, as every time on Surge's wire.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn header_text(name: &str, value: &AMQPValue) -> Result<String, BindingError> {
    let not_text = || BindingError::HeaderNotText {
        name: name.to_owned(),
    };
    match value {
        AMQPValue::LongString(s) => {
            String::from_utf8(s.as_bytes().to_vec()).map_err(|_| not_text())
        }
        AMQPValue::ShortString(s) => Ok(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => String::from_utf8(b.as_slice().to_vec()).map_err(|_| not_text()),
        _ => Err(BindingError::HeaderType {
            name: name.to_owned(),
        }),
    }
}

/// Maps one header to the CloudEvents type system: text, integer, boolean or timestamp.
fn header_value(name: &str, value: &AMQPValue) -> Result<MessageAttributeValue, BindingError> {
    Ok(match value {
        AMQPValue::Boolean(b) => MessageAttributeValue::Boolean(*b),
        AMQPValue::ShortShortInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::ShortInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::ShortUInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::LongInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::LongUInt(i) => MessageAttributeValue::Integer(i64::from(*i)),
        AMQPValue::LongLongInt(i) => MessageAttributeValue::Integer(*i),
        AMQPValue::Timestamp(t) => {
            let secs = i64::try_from(*t).map_err(|_| BindingError::HeaderType {
                name: name.to_owned(),
            })?;
            match Utc.timestamp_opt(secs, 0).single() {
                Some(time) => MessageAttributeValue::DateTime(time),
                None => {
                    return Err(BindingError::HeaderType {
                        name: name.to_owned(),
                    });
                }
            }
        }
        other => MessageAttributeValue::String(header_text(name, other)?),
    })
}

/// Builds the AMQP message while the SDK walks the event's attributes.
#[derive(Default)]
struct BinaryEncoder {
    headers: FieldTable,
    content_type: Option<ShortString>,
}

impl BinaryEncoder {
    fn header(mut self, name: &str, value: AMQPValue) -> cloudevents::message::Result<Self> {
        // Attribute names are at most 20 characters by the spec, but an event built from client
        // input may carry anything: a name too long for an AMQP header is an error, not a panic.
        let key = ShortString::try_new(format!("{HEADER_PREFIX}{name}")).map_err(|e| {
            cloudevents::message::Error::Other {
                source: Box::new(e),
            }
        })?;
        self.headers.insert(key, value);
        Ok(self)
    }

    fn text(value: String) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value))
    }
}

impl BinarySerializer<AmqpMessage> for BinaryEncoder {
    fn set_spec_version(self, spec_version: SpecVersion) -> cloudevents::message::Result<Self> {
        self.header("specversion", Self::text(spec_version.to_string()))
    }

    fn set_attribute(
        mut self,
        name: &str,
        value: MessageAttributeValue,
    ) -> cloudevents::message::Result<Self> {
        match (name, value) {
            ("datacontenttype", value) => {
                self.content_type = ShortString::try_new(value.to_string()).ok();
                Ok(self)
            }
            (_, MessageAttributeValue::DateTime(time)) => {
                self.header(name, Self::text(format_time(&time)))
            }
            (_, value) => self.header(name, Self::text(value.to_string())),
        }
    }

    fn set_extension(
        self,
        name: &str,
        value: MessageAttributeValue,
    ) -> cloudevents::message::Result<Self> {
        // Integer and boolean extensions keep their type (AMQP long / boolean), as the AMQP
        // event format maps them; everything else travels as text.
        let value = match value {
            MessageAttributeValue::Boolean(b) => AMQPValue::Boolean(b),
            MessageAttributeValue::Integer(i) => AMQPValue::LongLongInt(i),
            MessageAttributeValue::DateTime(t) => Self::text(format_time(&t)),
            other => Self::text(other.to_string()),
        };
        self.header(name, value)
    }

    fn end_with_data(self, bytes: Vec<u8>) -> cloudevents::message::Result<AmqpMessage> {
        let mut message = self.end()?;
        message.body = bytes;
        Ok(message)
    }

    fn end(self) -> cloudevents::message::Result<AmqpMessage> {
        let mut properties = BasicProperties::default().with_headers(self.headers);
        if let Some(ct) = self.content_type {
            properties = properties.with_content_type(ct);
        }
        Ok(AmqpMessage {
            properties,
            body: Vec::new(),
        })
    }
}

/// A delivered binary-mode message, walked by the SDK's event builder.
struct BinaryDecoder<'a> {
    headers: Option<&'a FieldTable>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

impl BinaryDecoder<'_> {
    fn ce_headers(&self) -> impl Iterator<Item = (&str, &AMQPValue)> {
        self.headers
            .into_iter()
            .flat_map(|h| h.inner().iter())
            .filter_map(|(k, v)| k.as_str().strip_prefix(HEADER_PREFIX).map(|n| (n, v)))
    }

    fn check_header_types(&self) -> Result<(), BindingError> {
        for (name, value) in self.ce_headers() {
            header_value(name, value)?;
        }
        Ok(())
    }
}

impl BinaryDeserializer for BinaryDecoder<'_> {
    fn deserialize_binary<R: Sized, V: BinarySerializer<R>>(
        self,
        visitor: V,
    ) -> cloudevents::message::Result<R> {
        let mut visitor = visitor.set_spec_version(SpecVersion::V10)?;
        let attributes = SpecVersion::V10.attribute_names();
        if let Some(ct) = self.content_type {
            visitor = visitor.set_attribute(
                "datacontenttype",
                MessageAttributeValue::String(ct.to_owned()),
            )?;
        }
        for (name, value) in self.ce_headers() {
            if name == "specversion" || name == "datacontenttype" {
                continue;
            }
            let value =
                header_value(name, value).map_err(|e| cloudevents::message::Error::Other {
                    source: Box::new(e),
                })?;
            visitor = if attributes.contains(&name) {
                visitor.set_attribute(name, value)?
            } else {
                visitor.set_extension(name, value)?
            };
        }
        if self.body.is_empty() {
            visitor.end()
        } else {
            visitor.end_with_data(self.body.to_vec())
        }
    }
}

impl StructuredDeserializer for BinaryDecoder<'_> {
    fn deserialize_structured<R: Sized, V: StructuredSerializer<R>>(
        self,
        _visitor: V,
    ) -> cloudevents::message::Result<R> {
        Err(cloudevents::message::Error::WrongEncoding {})
    }
}

impl MessageDeserializer for BinaryDecoder<'_> {
    fn encoding(&self) -> Encoding {
        Encoding::BINARY
    }
}

#[cfg(test)]
mod tests;
