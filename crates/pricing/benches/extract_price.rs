//! Extraction + pricing of representative payloads per format, beside a
//! plain `serde_json::from_slice::<Value>` of the same bytes.
//!
//! Run: `cargo bench -p charlie-pricing --bench extract_price`; with
//! `PRICING_BENCH_INTERLEAVED=1`, an interleaved best-of-blocks comparison
//! instead (steadier on a shared machine).

use charlie_pricing::{Catalog, report};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group};
use std::time::Duration;
use time::macros::datetime;

const OPENAI_CHAT: &str = include_str!("../tests/fixtures/openai_chat.json");
const OPENAI_STREAM_CHUNK: &str = r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"token "},"logprobs":null,"finish_reason":null}],"usage":null}"#;
const OPENAI_STREAM_LAST: &str = r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

/// The OpenAI fixture with its message text grown so the payload is `size` bytes.
fn openai_chat(size: usize) -> Vec<u8> {
    let marker = "Nothing in the frame is hurried.";
    let pad = size.saturating_sub(OPENAI_CHAT.len());
    let filler: String = " The light moves slowly over the grass."
        .chars()
        .cycle()
        .take(pad)
        .collect();
    OPENAI_CHAT
        .replacen(marker, &format!("{marker}{filler}"), 1)
        .into_bytes()
}

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut events: Vec<&str> = std::iter::repeat_n(OPENAI_STREAM_CHUNK, chunks).collect();
    events.push(OPENAI_STREAM_LAST);
    format!("[{}]", events.join(",")).into_bytes()
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("openai_chat_2k", openai_chat(2048)),
        ("openai_chat_8k", openai_chat(8192)),
        ("openai_stream_8k", openai_stream(27)),
        (
            "openai_responses",
            include_bytes!("../tests/fixtures/openai_responses.json").to_vec(),
        ),
        (
            "anthropic_message",
            include_bytes!("../tests/fixtures/anthropic_message.json").to_vec(),
        ),
        (
            "anthropic_stream",
            include_bytes!("../tests/fixtures/anthropic_stream.json").to_vec(),
        ),
        (
            "gemini",
            include_bytes!("../tests/fixtures/gemini.json").to_vec(),
        ),
        (
            "bedrock_converse",
            include_bytes!("../tests/fixtures/bedrock_converse.json").to_vec(),
        ),
        (
            "langchain_aimessage",
            include_bytes!("../tests/fixtures/langchain_aimessage.json").to_vec(),
        ),
        (
            "langflow_run",
            include_bytes!("../tests/fixtures/langflow_run.json").to_vec(),
        ),
        (
            "langflow_run_two_llms",
            include_bytes!("../tests/fixtures/langflow_run_two_llms.json").to_vec(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let at = datetime!(2025-06-01 12:00 UTC);
    let mut group = c.benchmark_group("payloads");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in payloads() {
        // A payload that stops extracting is a broken benchmark, not a fast one.
        let check = report(&catalog, &bytes, at);
        assert!(
            matches!(&check, Ok(r) if r.usage.is_some()),
            "{name} ({} bytes): {check:?}",
            bytes.len()
        );
        let label = format!("{name}/{}B", bytes.len());
        group.bench_with_input(
            BenchmarkId::new("extract_and_price", &label),
            &bytes,
            |b, bytes| b.iter(|| report(&catalog, black_box(bytes), at)),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_json_value_parse", &label),
            &bytes,
            |b, bytes| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(bytes))),
        );
    }
    group.finish();
}

/// With `PRICING_BENCH_INTERLEAVED=1`: extract+price and the plain parse in
/// alternating blocks of 500 calls, 400 rounds, best block of each, so that
/// load from other processes on a shared machine hits both sides alike.
fn interleaved() {
    let catalog = Catalog::builtin();
    let at = datetime!(2025-06-01 12:00 UTC);
    const BLOCK: u32 = 500;
    println!("| payload | bytes | extract + price | plain `Value` parse | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (name, bytes) in payloads() {
        let (mut best_e, mut best_p) = (Duration::MAX, Duration::MAX);
        for _ in 0..400 {
            let t = std::time::Instant::now();
            for _ in 0..BLOCK {
                black_box(report(&catalog, black_box(&bytes), at).ok());
            }
            best_e = best_e.min(t.elapsed());
            let t = std::time::Instant::now();
            for _ in 0..BLOCK {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&bytes)).ok());
            }
            best_p = best_p.min(t.elapsed());
        }
        let per_s = |d: Duration| f64::from(BLOCK) / d.as_secs_f64() / 1000.0;
        println!(
            "| {name} | {} | {:.0} k | {:.0} k | {:.2} |",
            bytes.len(),
            per_s(best_e),
            per_s(best_p),
            best_p.as_secs_f64() / best_e.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("PRICING_BENCH_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
