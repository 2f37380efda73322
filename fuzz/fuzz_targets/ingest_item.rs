//! The ingest item check from any bytes read as JSON: every item type,
//! `llm_response` extraction and pricing included. Must answer with an item
//! or an item error (code and message), never panic.
#![no_main]

use charlie_pricing::Catalog;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::builtin)
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = charlie_store::ingest::parse_item(&value, now, catalog());
});
