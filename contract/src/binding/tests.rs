use super::*;
use cloudevents::{EventBuilder, EventBuilderV10};
use proptest::prelude::*;

fn sample() -> Event {
    EventBuilderV10::new()
        .id("0193a7e0-0000-7000-8000-000000000001")
        .source("/surge/gateway")
        .ty("dev.surge.echo")
        .subject("job-1")
        .time(Utc.with_ymd_and_hms(2026, 11, 24, 21, 0, 0).unwrap())
        .extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .extension("surgeattempt", 3_i64)
        .extension("surgeflag", true)
        .data("application/json", serde_json::json!({"hello": "world"}))
        .build()
        .unwrap()
}

fn headers(message: &AmqpMessage) -> &std::collections::BTreeMap<ShortString, AMQPValue> {
    message.properties.headers().as_ref().unwrap().inner()
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn binary_props(pairs: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert((*k).into(), v.clone());
    }
    BasicProperties::default()
        .with_headers(table)
        .with_content_type("application/json".into())
}

#[test]
fn binary_mode_puts_attributes_in_ce_headers_and_data_in_the_body() {
    let message = encode(sample()).unwrap();
    let h = headers(&message);
    assert_eq!(
        h.get("ce-id"),
        Some(&text("0193a7e0-0000-7000-8000-000000000001"))
    );
    assert_eq!(h.get("ce-specversion"), Some(&text("1.0")));
    assert_eq!(h.get("ce-type"), Some(&text("dev.surge.echo")));
    assert_eq!(h.get("ce-time"), Some(&text("2026-11-24T21:00:00Z")));
    assert_eq!(h.get("ce-surgeattempt"), Some(&AMQPValue::LongLongInt(3)));
    assert_eq!(h.get("ce-surgeflag"), Some(&AMQPValue::Boolean(true)));
    assert!(
        !h.contains_key("ce-datacontenttype"),
        "datacontenttype is the content_type property"
    );
    assert_eq!(
        message.properties.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&message.body).unwrap()["hello"],
        "world"
    );
}

#[test]
fn binary_mode_round_trips() {
    let event = sample();
    let message = encode(event.clone()).unwrap();
    let back = decode(&message.properties, &message.body).unwrap();
    assert_eq!(back.id(), event.id());
    assert_eq!(back.time(), event.time());
    assert_eq!(
        back.extension("surgeattempt"),
        event.extension("surgeattempt")
    );
    assert_eq!(json_data(&back).unwrap(), json_data(&event).unwrap());
}

#[test]
fn structured_mode_is_accepted_on_input() {
    let event = sample();
    let props = BasicProperties::default().with_content_type(STRUCTURED_JSON.into());
    let back = decode(&props, &serde_json::to_vec(&event).unwrap()).unwrap();
    assert_eq!(back, event);
}

#[test]
fn a_message_without_specversion_is_not_a_cloud_event() {
    let props = BasicProperties::default().with_content_type("application/json".into());
    let err = decode(&props, b"{}").unwrap_err();
    assert!(matches!(err, BindingError::NotACloudEvent(_)), "{err}");
}

#[test]
fn a_missing_required_attribute_is_named() {
    let props = binary_props(&[
        ("ce-specversion", text("1.0")),
        ("ce-id", text("1")),
        ("ce-source", text("/x")),
    ]);
    let err = decode(&props, b"{}").unwrap_err();
    assert!(err.to_string().contains("type"), "{err}");
}

#[test]
fn a_wrong_specversion_is_refused() {
    let props = binary_props(&[
        ("ce-specversion", text("0.3")),
        ("ce-id", text("1")),
        ("ce-source", text("/x")),
        ("ce-type", text("t")),
    ]);
    assert!(
        matches!(decode(&props, b"{}"), Err(BindingError::UnsupportedSpecVersion(v)) if v == "0.3")
    );
}

#[test]
fn a_bad_time_is_refused() {
    let props = binary_props(&[
        ("ce-specversion", text("1.0")),
        ("ce-id", text("1")),
        ("ce-source", text("/x")),
        ("ce-type", text("t")),
        ("ce-time", text("yesterday")),
    ]);
    let err = decode(&props, b"{}").unwrap_err();
    assert!(err.to_string().contains("time"), "{err}");
}

#[test]
fn undecodable_data_is_refused_by_json_data() {
    let props = binary_props(&[
        ("ce-specversion", text("1.0")),
        ("ce-id", text("1")),
        ("ce-source", text("/x")),
        ("ce-type", text("t")),
    ]);
    let event = decode(&props, b"{not json").unwrap();
    assert!(matches!(
        json_data(&event),
        Err(BindingError::DataNotJson { .. })
    ));
}

#[test]
fn a_non_text_header_is_refused() {
    let props = binary_props(&[
        ("ce-specversion", text("1.0")),
        ("ce-id", AMQPValue::FieldArray(Default::default())),
        ("ce-source", text("/x")),
        ("ce-type", text("t")),
    ]);
    assert!(matches!(
        decode(&props, b"{}"),
        Err(BindingError::HeaderType { .. })
    ));
}

#[test]
fn other_structured_formats_are_refused() {
    let props =
        BasicProperties::default().with_content_type("application/cloudevents-batch+json".into());
    assert!(matches!(
        decode(&props, b"[]"),
        Err(BindingError::UnsupportedStructuredFormat(_))
    ));
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_event_survives_binary_encode_and_decode(
        id in "[ -~]{1,40}",
        source in "/[a-z0-9/]{0,20}",
        ty in "[a-z][a-z.]{0,30}",
        subject in proptest::option::of("[ -~]{1,20}"),
        secs in 0_i64..4_102_444_800,
        nanos in 0_u32..1_000_000_000,
        ext_text in "[ -~]{0,20}",
        ext_int in any::<i64>(),
        ext_bool in any::<bool>(),
        data in arb_json(),
    ) {
        let mut builder = EventBuilderV10::new()
            .id(id)
            .source(source)
            .ty(ty)
            .time(Utc.timestamp_opt(secs, nanos).unwrap())
            .extension("exttext", ext_text)
            .extension("extint", ext_int)
            .extension("extbool", ext_bool)
            .data("application/json", data);
        if let Some(subject) = subject {
            builder = builder.subject(subject);
        }
        let event = builder.build().unwrap();
        let message = encode(event.clone()).unwrap();
        let back = decode(&message.properties, &message.body).unwrap();
        prop_assert_eq!(back.id(), event.id());
        prop_assert_eq!(back.source(), event.source());
        prop_assert_eq!(back.ty(), event.ty());
        prop_assert_eq!(back.subject(), event.subject());
        prop_assert_eq!(back.time(), event.time());
        prop_assert_eq!(back.datacontenttype(), event.datacontenttype());
        for name in ["exttext", "extint", "extbool"] {
            prop_assert_eq!(back.extension(name), event.extension(name));
        }
        prop_assert_eq!(json_data(&back).unwrap(), json_data(&event).unwrap());
    }
}

#[test]
fn nul_postgres_cannot_store_is_refused_naming_the_field() {
    let err = storable(&serde_json::json!({"user": {"a/b": ["ok", "x\u{0}y"]}})).unwrap_err();
    assert_eq!(
        err,
        "the field /user/a~1b/1 holds U+0000 (NUL), which Surge does not store"
    );
    let err = storable(&serde_json::json!({"ok": {"bad\u{0}name": 1}})).unwrap_err();
    assert!(err.contains("a member name at the field /ok"), "{err}");
    let err = storable(&serde_json::json!("\u{0}")).unwrap_err();
    assert!(err.starts_with("the value holds U+0000"), "{err}");
    assert!(storable(&serde_json::json!({"fine": "\\u0000 as text"})).is_ok());
}

#[test]
fn numbers_postgres_cannot_hand_back_are_refused() {
    assert!(storable(&serde_json::json!({"a": [1, 2.5, -1e300, 1e308]})).is_ok());
    let err = storable(&serde_json::json!({"a": [1, {"b": f64::MAX}]})).unwrap_err();
    assert!(
        err.contains("1e308") && err.contains("the field /a/1/b"),
        "{err}"
    );
    assert!(storable(&serde_json::json!(-1.7976931348623157e308)).is_err());
    // Checked where input enters (`json_input`), not on every decode of what Surge made.
    let mut event = sample();
    event.set_data("application/json", serde_json::json!({"b": f64::MAX}));
    assert!(json_data(&event).is_ok());
    assert!(matches!(
        json_input(&event),
        Err(BindingError::Unstorable(_))
    ));
}
