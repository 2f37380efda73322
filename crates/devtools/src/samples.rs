//! Realistic raw LLM responses in each provider's own shape, shared by the
//! demo data (`demo.rs`) and the benchmarks (`charlie-bench`), so both exercise the
//! same extraction paths as real traffic.

use rand::{Rng, rngs::StdRng};
use serde_json::{Value, json};

/// A provider's response format.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    OpenAi,
    LangChain,
    Anthropic,
    Gemini,
}

const ANSWER: &str = "Great question! Let's break it down step by step.";

/// Token counts of a typical assistant turn: `(input, output, cached)`,
/// a third of them with half the prompt read from cache.
pub fn draw_usage(rng: &mut StdRng) -> (u64, u64, u64) {
    let input: u64 = rng.random_range(250..6000);
    let output: u64 = rng.random_range(40..900);
    let cached: u64 = if rng.random_bool(0.3) {
        input / 2 / 64 * 64
    } else {
        0
    };
    (input, output, cached)
}

/// A response of `model` in `shape` reporting these counts (`cached` is part
/// of `input`, as the normalized convention counts it).
pub fn llm_response(
    rng: &mut StdRng,
    model: &str,
    shape: Shape,
    input: u64,
    output: u64,
    cached: u64,
) -> Value {
    match shape {
        Shape::OpenAi => json!({
            "id": format!("chatcmpl-{}", rng.random::<u64>()),
            "object": "chat.completion",
            "created": 1_741_570_283,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": input,
                "completion_tokens": output,
                "total_tokens": input + output,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
            }
        }),
        Shape::LangChain => json!({
            "content": ANSWER,
            "type": "ai",
            "response_metadata": {
                "token_usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                                "prompt_tokens_details": {"cached_tokens": cached}},
                "model_name": model,
                "finish_reason": "stop"
            },
            "usage_metadata": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output,
                               "input_token_details": {"cache_read": cached}}
        }),
        Shape::Anthropic => json!({
            "id": format!("msg_{}", rng.random::<u64>()),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": input - cached,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached,
                "output_tokens": output
            }
        }),
        Shape::Gemini => json!({
            "candidates": [{"content": {"parts": [{"text": ANSWER}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": input,
                "candidatesTokenCount": output,
                "totalTokenCount": input + output,
                "cachedContentTokenCount": cached
            },
            "modelVersion": model
        }),
    }
}
