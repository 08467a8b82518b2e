//! Bad input without panics: property tests over configuration text and over every
//! provider answer the client decodes (bounded runs, as in CI).

use std::path::Path;

use proptest::prelude::*;
use snaprotd::config::Config;
use snaprotd::provider::{RestoreAnswer, Server, Snapshot, SnapshotPage, assumptions};

const EXAMPLE: &str = include_str!("../config/snaprotd.toml");

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("completed"),
            Just("in_progress"),
            Just("failed"),
            Just("2025-01-15T18:30:00Z")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("server".to_string()),
                    Just("name".to_string()),
                    Just("status".to_string()),
                    Just("size_mb".to_string()),
                    Just("created_at".to_string()),
                    Just("results".to_string()),
                    Just("next".to_string()),
                    Just("count".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn decode_everything(bytes: &[u8]) {
    let _ = serde_json::from_slice::<SnapshotPage>(bytes);
    let _ = serde_json::from_slice::<Snapshot>(bytes);
    let _ = serde_json::from_slice::<Server>(bytes);
    let _ = serde_json::from_slice::<RestoreAnswer>(bytes);
    let _ = assumptions::error_text(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_configuration_text_gives_a_config_or_errors_never_a_panic(text in "(?s).{0,400}") {
        let _ = Config::from_source(Path::new("fuzz.toml"), &text);
    }

    #[test]
    fn a_damaged_example_configuration_never_panics(cut in 0usize..EXAMPLE.len(), len in 0usize..40, insert in ".{0,12}") {
        let mut text = EXAMPLE.to_string();
        let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + len..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text.replace_range(start..end, &insert);
        if let Err(errors) = Config::from_source(Path::new("fuzz.toml"), &text) {
            for e in errors.0 {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn any_bytes_as_a_provider_answer_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        decode_everything(&bytes);
    }

    #[test]
    fn any_json_as_a_provider_answer_never_panics(value in json_value()) {
        decode_everything(value.to_string().as_bytes());
        let page = serde_json::json!({"count": 1, "next": null, "results": [value.clone()]});
        decode_everything(page.to_string().as_bytes());
    }

    #[test]
    fn error_text_returns_the_detail_the_provider_wrote(text in ".{0,500}") {
        let body = serde_json::json!({"detail": text}).to_string();
        prop_assert_eq!(assumptions::error_text(body.as_bytes()), text);
    }
}
