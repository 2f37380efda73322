//! Reading normalized token usage out of raw provider, LangChain and Langflow
//! JSON. See `PROVIDERS.md` for the field mapping of every format.

use crate::{
    ExtractError,
    node::{self, MAX_DEPTH, Node},
};
use charlie_domain::TokenUsage;
use serde::Serialize;
use std::fmt;

/// Largest payload [`extract_slice`] accepts.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The usage of one LLM call found in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallUsage {
    /// The model the payload names for this call, as written.
    pub model: Option<String>,
    pub usage: TokenUsage,
}

/// What a payload says about token usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extraction {
    /// The model string the payload carries, as written (the first call's
    /// when several calls name different models).
    pub model: Option<String>,
    /// The sum over all distinct calls; `None` when the payload carries no
    /// usage at all ("no usage found", which is not an error).
    pub usage: Option<TokenUsage>,
    pub warnings: Vec<String>,
    /// Every distinct call, in order of appearance; their usages sum to `usage`.
    pub calls: Vec<CallUsage>,
}

/// Extracts usage from an already parsed payload.
///
/// A JSON array is read as the events of one stream, in order: counts of the
/// same call are merged (streamed counts are cumulative), distinct calls
/// (told apart by their ids) are summed.
///
/// ```
/// use serde_json::json;
/// let payload = json!({
///     "model": "gpt-4o-2024-08-06",
///     "usage": {"prompt_tokens": 1200, "completion_tokens": 300,
///               "prompt_tokens_details": {"cached_tokens": 1024}}
/// });
/// let found = charlie_pricing::extract(&payload)?;
/// let usage = found.usage.unwrap_or_default();
/// assert_eq!(found.model.as_deref(), Some("gpt-4o-2024-08-06"));
/// assert_eq!((usage.input_tokens, usage.cache_read_input_tokens), (1200, 1024));
/// # Ok::<(), charlie_pricing::ExtractError>(())
/// ```
pub fn extract(payload: &serde_json::Value) -> Result<Extraction, ExtractError> {
    let node = Node::from_value(payload, 0).map_err(|limit| ExtractError::TooDeep { limit })?;
    extract_node(&node).map(Found::into_extraction)
}

/// Parses and extracts in one pass, without building a full `Value`.
///
/// Payloads above [`MAX_PAYLOAD_BYTES`] or nested deeper than 128 levels are
/// refused, and malformed JSON is an error.
///
/// ```
/// let body = br#"{"type":"message","model":"claude-sonnet-4-20250514",
///   "usage":{"input_tokens":10,"cache_read_input_tokens":2000,"output_tokens":50}}"#;
/// let usage = charlie_pricing::extract_slice(body)?.usage.unwrap_or_default();
/// assert_eq!(usage.input_tokens, 2010); // Anthropic's input excludes cache reads
/// # Ok::<(), charlie_pricing::ExtractError>(())
/// ```
pub fn extract_slice(bytes: &[u8]) -> Result<Extraction, ExtractError> {
    with_found(bytes, |found| found.into_extraction())
}

/// Parses and extracts, and hands what was found, still borrowing the
/// payload, to `f` (which [`crate::report`] prices without copying it).
pub(crate) fn with_found<R>(
    bytes: &[u8],
    f: impl FnOnce(Found<'_>) -> R,
) -> Result<R, ExtractError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ExtractError::TooLarge {
            size: bytes.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let node = node::parse(bytes).map_err(json_error)?;
    extract_node(&node).map(f)
}

fn json_error(e: serde_json::Error) -> ExtractError {
    let text = e.to_string();
    if text.contains("recursion limit") {
        ExtractError::TooDeep { limit: MAX_DEPTH }
    } else {
        ExtractError::Json(text)
    }
}

/// Where a value sits in the payload; rendered only for error messages.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Idx(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => {
                parent.fmt(f)?;
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    write!(f, ".{key}")
                } else {
                    write!(f, "[{key:?}]")
                }
            }
            Path::Idx(parent, i) => {
                parent.fmt(f)?;
                write!(f, "[{i}]")
            }
        }
    }
}

struct Record<'n> {
    id: Option<&'n str>,
    model: Option<&'n str>,
    usage: TokenUsage,
    /// Metrics that repeat a call's usage (Bedrock headers and invocation
    /// metrics); dropped when the same event carries the call's own usage.
    secondary: bool,
    /// How a later event of the same call is merged into it; see [`Stated`].
    stated: Option<Stated>,
    /// `Some(i)`: a sub-call billed apart from the record before it (an
    /// Anthropic advisor iteration `i`), keyed under that record's call.
    sub: Option<usize>,
    /// The model is the one that served the call (an Anthropic fallback) and
    /// replaces what earlier events of the call named.
    served: bool,
}

/// Which parts of the convention a usage object states itself, for usage
/// objects whose counts are cumulative and authoritative (Anthropic
/// `message_start`, then `message_delta`; Bedrock): a later event's stated
/// parts replace the call's, the parts it leaves out are kept. Usages
/// without it are merged field by field with max.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stated {
    /// The uncached input (Anthropic's own `input_tokens`).
    uncached: bool,
    read: bool,
    write: bool,
    write_1h: bool,
    output: bool,
    reasoning: bool,
}

impl Stated {
    const ALL: Stated = Stated {
        uncached: true,
        read: true,
        write: true,
        write_1h: true,
        output: true,
        reasoning: true,
    };
}

/// One converted usage object.
struct Conv<'n> {
    usage: TokenUsage,
    stated: Option<Stated>,
    /// The model that served the call, when the usage names it (fallback).
    served_model: Option<&'n str>,
    /// Calls the usage reports but bills apart (advisor iterations): their
    /// model, if named, and usage.
    subs: Vec<(Option<&'n str>, TokenUsage)>,
}

impl<'n> Conv<'n> {
    fn merged(usage: TokenUsage) -> Conv<'n> {
        Conv {
            usage,
            stated: None,
            served_model: None,
            subs: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKey<'n> {
    Id(&'n str),
    StreamAnon,
    Anon(usize),
}

pub(crate) struct Call<'n> {
    key: CallKey<'n>,
    sub: Option<usize>,
    pub(crate) model: Option<&'n str>,
    pub(crate) usage: TokenUsage,
}

/// An [`Extraction`] that still borrows the payload.
pub(crate) struct Found<'n> {
    pub(crate) model: Option<&'n str>,
    pub(crate) usage: Option<TokenUsage>,
    pub(crate) warnings: Vec<String>,
    pub(crate) calls: Vec<Call<'n>>,
}

impl Found<'_> {
    fn into_extraction(self) -> Extraction {
        Extraction {
            model: self.model.map(str::to_owned),
            usage: self.usage,
            warnings: self.warnings,
            calls: self
                .calls
                .into_iter()
                .map(|c| CallUsage {
                    model: c.model.map(str::to_owned),
                    usage: c.usage,
                })
                .collect(),
        }
    }
}

fn extract_node<'n>(root: &'n Node<'n>) -> Result<Found<'n>, ExtractError> {
    let mut walker = Walker {
        records: Vec::with_capacity(4),
        first_model: None,
        warnings: Vec::new(),
    };
    let mut calls: Vec<Call<'_>> = Vec::with_capacity(2);
    let is_stream = matches!(root, Node::Arr(_));
    let events = match root {
        Node::Arr(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut current: Option<&str> = None;
    let mut anon = 0usize;
    for (i, event) in events.iter().enumerate() {
        let path = &if is_stream {
            Path::Idx(&Path::Root, i)
        } else {
            Path::Root
        };
        if is_stream && let Some(id) = event_id(event) {
            current = Some(id);
        }
        walker.records.clear();
        walker.walk(event, path, None, None, 1)?;
        let has_primary = walker.records.iter().any(|r| !r.secondary);
        let mut parent_key = CallKey::StreamAnon;
        for rec in walker.records.drain(..) {
            if rec.secondary && has_primary {
                continue;
            }
            let key = if rec.sub.is_some() {
                parent_key
            } else {
                match rec.id {
                    Some(id) => {
                        if is_stream {
                            current = Some(id);
                        }
                        CallKey::Id(id)
                    }
                    None if is_stream => current.map_or(CallKey::StreamAnon, CallKey::Id),
                    None => {
                        anon += 1;
                        CallKey::Anon(anon)
                    }
                }
            };
            parent_key = key;
            if let Some(call) = calls.iter_mut().find(|c| c.key == key && c.sub == rec.sub) {
                call.usage = merge(&call.usage, &rec.usage, rec.stated)
                    .map_err(|_| ExtractError::Overflow { path: "$".into() })?;
                call.model = if rec.served {
                    rec.model.or(call.model)
                } else {
                    call.model.or(rec.model)
                };
            } else {
                calls.push(Call {
                    key,
                    sub: rec.sub,
                    model: rec.model,
                    usage: rec.usage,
                });
            }
        }
    }

    let mut warnings = std::mem::take(&mut walker.warnings);
    let mut total: Option<TokenUsage> = None;
    for call in &calls {
        call.usage
            .validate()
            .map_err(|e| ExtractError::Inconsistent {
                path: "$".into(),
                reason: format!("after merging streamed events: {e}"),
            })?;
        total = Some(match total {
            None => call.usage,
            Some(t) => t
                .checked_add(&call.usage)
                .map_err(|_| ExtractError::Overflow { path: "$".into() })?,
        });
    }
    // The distinct models, in order of appearance; listed only when several.
    let first_call_model = calls.iter().find_map(|c| c.model);
    if let Some(first) = first_call_model
        && calls.iter().any(|c| c.model.is_some_and(|m| m != first))
    {
        let mut models: Vec<&str> = Vec::new();
        for m in calls.iter().filter_map(|c| c.model) {
            if !models.contains(&m) {
                models.push(m);
            }
        }
        warnings.push(format!(
            "the payload carries several models ({}); each call is priced with its own",
            models.join(", ")
        ));
    }
    if calls.iter().any(|c| c.model.is_none()) && first_call_model.is_some() {
        warnings.push("some calls name no model".into());
    }
    let model = first_call_model.or(walker.first_model);
    Ok(Found {
        model,
        usage: total,
        warnings,
        calls,
    })
}

/// The id a stream event gives its call (OpenAI chunks, Anthropic
/// `message_start`, Responses events, Gemini chunks).
fn event_id<'n>(event: &'n Node<'n>) -> Option<&'n str> {
    event
        .str_of("id")
        .or_else(|| event.str_of("responseId"))
        .or_else(|| event.get("message").and_then(|m| m.str_of("id")))
        .or_else(|| event.get("response").and_then(|m| m.str_of("id")))
}

/// Merges a later usage of a call into the call's: with max, or, for a usage
/// that states its parts (see [`Stated`]), its stated parts replace the
/// call's. `Err` on overflow.
fn merge(call: &TokenUsage, later: &TokenUsage, stated: Option<Stated>) -> Result<TokenUsage, ()> {
    let Some(s) = stated else {
        return Ok(max_merge(call, later));
    };
    let uncached = |u: &TokenUsage| {
        u.input_tokens
            .saturating_sub(u.cache_read_input_tokens)
            .saturating_sub(u.cache_creation_input_tokens)
    };
    let pick = |stated: bool, later: u64, call: u64| if stated { later } else { call };
    let read = pick(
        s.read,
        later.cache_read_input_tokens,
        call.cache_read_input_tokens,
    );
    let write = pick(
        s.write,
        later.cache_creation_input_tokens,
        call.cache_creation_input_tokens,
    );
    let fresh = pick(s.uncached, uncached(later), uncached(call));
    let output = pick(s.output, later.output_tokens, call.output_tokens);
    let input = fresh
        .checked_add(read)
        .and_then(|v| v.checked_add(write))
        .ok_or(())?;
    Ok(TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: read,
        cache_creation_input_tokens: write,
        cache_creation_1h_input_tokens: pick(
            s.write_1h,
            later.cache_creation_1h_input_tokens,
            call.cache_creation_1h_input_tokens,
        )
        .min(write),
        reasoning_tokens: pick(s.reasoning, later.reasoning_tokens, call.reasoning_tokens)
            .min(output),
    })
}

fn max_merge(a: &TokenUsage, b: &TokenUsage) -> TokenUsage {
    TokenUsage {
        input_tokens: a.input_tokens.max(b.input_tokens),
        output_tokens: a.output_tokens.max(b.output_tokens),
        cache_read_input_tokens: a.cache_read_input_tokens.max(b.cache_read_input_tokens),
        cache_creation_input_tokens: a
            .cache_creation_input_tokens
            .max(b.cache_creation_input_tokens),
        cache_creation_1h_input_tokens: a
            .cache_creation_1h_input_tokens
            .max(b.cache_creation_1h_input_tokens),
        reasoning_tokens: a.reasoning_tokens.max(b.reasoning_tokens),
    }
}

struct Walker<'n> {
    records: Vec<Record<'n>>,
    first_model: Option<&'n str>,
    warnings: Vec<String>,
}

/// What one pass over an object's keys tells the walker: the values of the
/// keys that name a model or an id (the last of duplicates, as
/// [`Node::get`] reads them), and whether any key can lead to a usage.
struct Keys<'n> {
    slots: [Option<&'n Node<'n>>; SLOTS],
    may_hold_usage: bool,
}

/// Keys an object names its model with, in order of preference.
const MODEL_SLOTS: usize = 6;
const RESPONSE_METADATA: usize = 6;
const LLM_OUTPUT: usize = 7;
const SOURCE: usize = 8;
/// `id`, `responseId`, `response_id`, in order of preference.
const ID_SLOTS: usize = 9;
/// Langflow keeps a message's `id` in its `data` (the message repeats its
/// fields there) when the message itself has none.
const DATA: usize = 12;
const SLOTS: usize = 13;

fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "model" => 0,
        "model_name" => 1,
        "modelId" => 2,
        "model_id" => 3,
        "modelVersion" => 4,
        "model_version" => 5,
        "response_metadata" => RESPONSE_METADATA,
        "llm_output" => LLM_OUTPUT,
        "source" => SOURCE,
        "id" => ID_SLOTS,
        "responseId" => ID_SLOTS + 1,
        "response_id" => ID_SLOTS + 2,
        "data" => DATA,
        _ => return None,
    })
}

/// Whether [`Walker::read_call`] can find anything under this key: every
/// key it or [`Walker::convert`] reads directly on the object.
fn leads_to_usage(key: &str) -> bool {
    matches!(
        key,
        "usage_metadata"
            | "usageMetadata"
            | "usage"
            | "token_usage"
            | "llm_output"
            | "x_groq"
            | "meta"
            | "amazon-bedrock-invocationMetrics"
            | "billed_units"
            | "tokens"
            | "prompt_tokens"
            | "completion_tokens"
            | "prompt_cache_hit_tokens"
            | "prompt_cache_miss_tokens"
            | "generation_token_count"
            | "promptTokenCount"
            | "candidatesTokenCount"
            | "totalTokenCount"
            | "prompt_token_count"
            | "candidates_token_count"
            | "input_tokens"
            | "output_tokens"
            | "cache_read_input_tokens"
            | "cache_creation_input_tokens"
            | "inputTokens"
            | "outputTokens"
            | "inputTokenCount"
            | "outputTokenCount"
            | "prompt_eval_count"
            | "eval_count"
            | "inputTextTokenCount"
    ) || key
        .as_bytes()
        .get(..BEDROCK_HEADER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(BEDROCK_HEADER_PREFIX))
}

/// Bedrock's usage headers all start so (matched without regard to case).
const BEDROCK_HEADER_PREFIX: &[u8] = b"x-amzn-bedrock-";

impl<'n> Keys<'n> {
    fn scan(fields: &'n [(std::borrow::Cow<'n, str>, Node<'n>)]) -> Keys<'n> {
        let mut keys = Keys {
            slots: [None; SLOTS],
            may_hold_usage: false,
        };
        for (key, value) in fields {
            if let Some(i) = slot(key) {
                keys.slots[i] = Some(value);
                // `llm_output` is both a model source and a usage container.
                if i == LLM_OUTPUT {
                    keys.may_hold_usage = true;
                }
            } else if !keys.may_hold_usage && leads_to_usage(key) {
                keys.may_hold_usage = true;
            }
        }
        keys
    }

    fn str_at(&self, i: usize) -> Option<&'n str> {
        self.slots[i]
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The model an object names for itself.
    fn model(&self) -> Option<&'n str> {
        if let Some(m) = (0..MODEL_SLOTS).find_map(|i| self.str_at(i)) {
            return Some(m);
        }
        if let Some(meta) = self.slots[RESPONSE_METADATA]
            && let Some(m) = ["model_name", "model", "model_id", "modelId"]
                .iter()
                .find_map(|k| meta.str_of(k))
        {
            return Some(m);
        }
        if let Some(m) = self.slots[LLM_OUTPUT]
            .and_then(|o| o.str_of("model_name").or_else(|| o.str_of("model")))
        {
            return Some(m);
        }
        // Langflow records the model of a message in `properties.source.source`.
        self.slots[SOURCE].and_then(|s| s.str_of("source"))
    }

    fn id(&self) -> Option<&'n str> {
        (ID_SLOTS..DATA)
            .find_map(|i| self.str_at(i))
            .or_else(|| self.slots[DATA].and_then(|d| d.str_of("id")))
    }
}

impl<'n> Walker<'n> {
    fn walk(
        &mut self,
        node: &'n Node<'n>,
        path: &Path<'_>,
        inherited_model: Option<&'n str>,
        parent_id: Option<&'n str>,
        depth: usize,
    ) -> Result<(), ExtractError> {
        if depth > MAX_DEPTH {
            return Err(ExtractError::TooDeep { limit: MAX_DEPTH });
        }
        match node {
            Node::Obj(fields) => {
                let keys = Keys::scan(fields);
                let local = keys.model();
                if self.first_model.is_none() {
                    self.first_model = local;
                }
                let model = local.or(inherited_model);
                let own_id = keys.id();
                if keys.may_hold_usage
                    && let Some((conv, secondary)) = self.read_call(node, path)?
                {
                    self.records.push(Record {
                        id: own_id.or(parent_id),
                        model: conv.served_model.or(model),
                        usage: conv.usage,
                        secondary,
                        stated: conv.stated,
                        sub: None,
                        served: conv.served_model.is_some(),
                    });
                    for (i, (sub_model, usage)) in conv.subs.into_iter().enumerate() {
                        self.records.push(Record {
                            id: None,
                            model: sub_model.or(model),
                            usage,
                            secondary,
                            stated: Some(Stated::ALL),
                            sub: Some(i),
                            served: false,
                        });
                    }
                    return Ok(());
                }
                for (key, value) in fields {
                    if matches!(value, Node::Obj(_) | Node::Arr(_)) {
                        let p = Path::Key(path, key);
                        self.walk(value, &p, model, own_id, depth + 1)?;
                    }
                }
            }
            Node::Arr(items) => {
                for (i, value) in items.iter().enumerate() {
                    if matches!(value, Node::Obj(_) | Node::Arr(_)) {
                        let p = Path::Idx(path, i);
                        self.walk(value, &p, inherited_model, parent_id, depth + 1)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The usage of the call this object describes, if it describes one.
    fn read_call(
        &mut self,
        obj: &'n Node<'n>,
        path: &Path<'_>,
    ) -> Result<Option<(Conv<'n>, bool)>, ExtractError> {
        for key in ["usage_metadata", "usageMetadata", "usage", "token_usage"] {
            if let Some(u) = self.container(obj, key, path)? {
                return Ok(Some((u, false)));
            }
        }
        for (outer, inner) in [
            ("llm_output", "token_usage"),
            ("llm_output", "usage"),
            ("x_groq", "usage"),
        ] {
            if let Some(o) = obj.get(outer) {
                let p = Path::Key(path, outer);
                if let Some(u) = self.container(o, inner, &p)? {
                    return Ok(Some((u, false)));
                }
            }
        }
        if let Some(meta) = obj.get("meta")
            && (meta.get("billed_units").is_some_and(Node::is_obj)
                || meta.get("tokens").is_some_and(Node::is_obj))
            && let Some(u) = self.container(obj, "meta", path)?
        {
            return Ok(Some((u, false)));
        }
        if let Some(u) = self.container(obj, "amazon-bedrock-invocationMetrics", path)? {
            return Ok(Some((u, true)));
        }
        if let Some(u) = header_usage(obj, path)? {
            return Ok(Some((Conv::merged(u), true)));
        }
        Ok(self.convert(obj, "", path)?.map(|u| (u, false)))
    }

    fn container(
        &mut self,
        obj: &'n Node<'n>,
        key: &str,
        path: &Path<'_>,
    ) -> Result<Option<Conv<'n>>, ExtractError> {
        match obj.get(key) {
            Some(inner @ Node::Obj(_)) => self.convert(inner, key, &Path::Key(path, key)),
            _ => Ok(None),
        }
    }

    /// Converts one usage object, whatever its provider, to the convention.
    fn convert(
        &mut self,
        u: &'n Node<'n>,
        container: &str,
        path: &Path<'_>,
    ) -> Result<Option<Conv<'n>>, ExtractError> {
        let r = Reader { obj: u, path };
        let mut stated = None;
        let mut served_model = None;
        let mut subs = Vec::new();
        let usage = if let Some(billed) = u
            .get("billed_units")
            .filter(|b| b.is_obj())
            .or_else(|| u.get("tokens").filter(|b| b.is_obj()))
        {
            // Cohere: billed units are what is charged.
            let key = if u.get("billed_units").is_some_and(Node::is_obj) {
                "billed_units"
            } else {
                "tokens"
            };
            let p = Path::Key(path, key);
            let b = Reader {
                obj: billed,
                path: &p,
            };
            let (input, output) = (b.count("input_tokens")?, b.count("output_tokens")?);
            if input.is_none() && output.is_none() {
                return Ok(None);
            }
            TokenUsage::new(input.unwrap_or(0), output.unwrap_or(0))
        } else if r.has_any(&[
            "prompt_tokens",
            "completion_tokens",
            "prompt_cache_hit_tokens",
            "prompt_cache_miss_tokens",
        ]) {
            r.openai_compatible()?
        } else if r.has_any(&["generation_token_count"]) {
            // Meta Llama through Bedrock InvokeModel.
            let input = r.count("prompt_token_count")?.unwrap_or(0);
            let output = r.count("generation_token_count")?.unwrap_or(0);
            TokenUsage::new(input, output)
        } else if r.has_any(&[
            "promptTokenCount",
            "candidatesTokenCount",
            "totalTokenCount",
            "prompt_token_count",
            "candidates_token_count",
        ]) {
            r.gemini()?
        } else if r.has_any(&[
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ]) {
            let langchain = container == "usage_metadata"
                || r.has_any(&["input_token_details", "output_token_details"]);
            // Anthropic's usage may carry `output_tokens_details` too (with
            // `thinking_tokens`); the Responses API's always carries
            // `input_tokens_details` and never Anthropic's cache fields.
            let anthropic = r.has_any(&[
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "cache_creation",
                "iterations",
                "server_tool_use",
            ]) || r.sub("output_tokens_details", "thinking_tokens")?.is_some();
            if langchain {
                r.langchain()?
            } else if !anthropic && r.has_any(&["input_tokens_details", "output_tokens_details"]) {
                r.responses()?
            } else {
                let (top, s) = r.anthropic_like(
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                    "total_tokens",
                )?;
                stated = Some(s);
                match self.iterations(u, path, &top)? {
                    Some(it) => {
                        served_model = it.served_model;
                        subs = it.advisors;
                        if let Some(billed) = it.billed {
                            stated = Some(Stated::ALL);
                            billed
                        } else {
                            top
                        }
                    }
                    None => top,
                }
            }
        } else if r.has_any(&["inputTokens", "outputTokens"]) {
            // Bedrock Converse.
            let (usage, s) = r.anthropic_like(
                "inputTokens",
                "outputTokens",
                "cacheReadInputTokens",
                "cacheWriteInputTokens",
                "totalTokens",
            )?;
            stated = Some(s);
            usage
        } else if r.has_any(&["inputTokenCount", "outputTokenCount"]) {
            // Bedrock invocation metrics.
            let (usage, s) = r.anthropic_like(
                "inputTokenCount",
                "outputTokenCount",
                "cacheReadInputTokenCount",
                "cacheWriteInputTokenCount",
                "totalTokenCount",
            )?;
            stated = Some(s);
            usage
        } else if r.has_any(&["prompt_eval_count", "eval_count"]) {
            let input = r.count("prompt_eval_count")?;
            let output = r.count("eval_count")?.unwrap_or(0);
            if input.is_none() {
                self.warnings.push(format!(
                    "{path}: Ollama reported no prompt_eval_count (the prompt was served from its cache); input counted as 0"
                ));
            }
            TokenUsage::new(input.unwrap_or(0), output)
        } else if r.has_any(&["inputTextTokenCount"]) {
            // Amazon Titan through Bedrock InvokeModel.
            let input = r.count("inputTextTokenCount")?.unwrap_or(0);
            let mut output = 0u64;
            if let Some(Node::Arr(results)) = u.get("results") {
                let rp = Path::Key(path, "results");
                for (i, item) in results.iter().enumerate() {
                    let ip = Path::Idx(&rp, i);
                    let ir = Reader {
                        obj: item,
                        path: &ip,
                    };
                    output = checked(output, ir.count("tokenCount")?.unwrap_or(0), &ip)?;
                }
            }
            TokenUsage::new(input, output)
        } else {
            return Ok(None);
        };
        usage.validate().map_err(|e| ExtractError::Inconsistent {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(Conv {
            usage,
            stated,
            served_model,
            subs,
        }))
    }

    /// Anthropic's `usage.iterations[]` (compaction, server-side fallback,
    /// advisor tool): `None` when absent or empty.
    ///
    /// - `compaction` and `message` iterations are billed at the request's
    ///   model: their sum is the call's usage (the top level leaves the
    ///   compaction pass out). Thinking is reported only at the top level.
    /// - A `fallback_message` iteration means a fallback model served the
    ///   turn: the top level is that answer's usage and stands, and the
    ///   iteration names the model that served it.
    /// - `advisor_message` iterations are billed apart at the advisor's
    ///   model: they become calls of their own.
    /// - Other types are not billed here and are reported in `warnings`.
    fn iterations(
        &mut self,
        u: &'n Node<'n>,
        path: &Path<'_>,
        top: &TokenUsage,
    ) -> Result<Option<Iterations<'n>>, ExtractError> {
        let items = match u.get("iterations") {
            None | Some(Node::Null) => return Ok(None),
            Some(Node::Arr(items)) if items.is_empty() => return Ok(None),
            Some(Node::Arr(items)) => items,
            Some(other) => {
                return Err(ExtractError::InvalidCount {
                    path: Path::Key(path, "iterations").to_string(),
                    reason: format!("expected an array, found {}", kind(other)),
                });
            }
        };
        let ip = Path::Key(path, "iterations");
        let mut out = Iterations {
            billed: None,
            served_model: None,
            advisors: Vec::new(),
        };
        let mut fallback = false;
        let mut billed: Option<TokenUsage> = None;
        for (i, item) in items.iter().enumerate() {
            let p = Path::Idx(&ip, i);
            let r = Reader {
                obj: item,
                path: &p,
            };
            let kind_of = item.str_of("type");
            let usage = || {
                r.anthropic_like(
                    "input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                    "total_tokens",
                )
                .map(|(usage, _)| usage)
            };
            match kind_of {
                Some("compaction" | "message") => {
                    let it = usage()?;
                    billed = Some(match billed {
                        None => it,
                        Some(b) => b.checked_add(&it).map_err(|_| ExtractError::Overflow {
                            path: p.to_string(),
                        })?,
                    });
                }
                Some("fallback_message") => {
                    fallback = true;
                    out.served_model = item.str_of("model");
                }
                Some("advisor_message") => out.advisors.push((item.str_of("model"), usage()?)),
                other => self.warnings.push(format!(
                    "{p}: usage iteration of type {} is not counted",
                    other.map_or_else(|| "(none)".to_owned(), |t| format!("{t:?}"))
                )),
            }
        }
        if !fallback && let Some(mut b) = billed {
            b.reasoning_tokens = top.reasoning_tokens.min(b.output_tokens);
            out.billed = Some(b);
        }
        Ok(Some(out))
    }
}

/// What [`Walker::iterations`] read.
struct Iterations<'n> {
    /// The sum of the billed iterations, when it replaces the top level.
    billed: Option<TokenUsage>,
    served_model: Option<&'n str>,
    advisors: Vec<(Option<&'n str>, TokenUsage)>,
}

/// Bedrock's usage headers (`x-amzn-bedrock-input-token-count`, ...), as an
/// HTTP header map carries them: strings are allowed here.
fn header_usage(obj: &Node<'_>, path: &Path<'_>) -> Result<Option<TokenUsage>, ExtractError> {
    let Node::Obj(fields) = obj else {
        return Ok(None);
    };
    let mut found = false;
    let mut get = |name: &str| -> Result<u64, ExtractError> {
        let Some((key, value)) = fields
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        else {
            return Ok(0);
        };
        found = true;
        let p = Path::Key(path, key);
        match value {
            Node::U64(n) => Ok(*n),
            Node::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<u64>().map_err(|_| ExtractError::Overflow {
                    path: p.to_string(),
                })
            }
            other => Err(invalid(&p, other)),
        }
    };
    let input = get("x-amzn-bedrock-input-token-count")?;
    let output = get("x-amzn-bedrock-output-token-count")?;
    let read = get("x-amzn-bedrock-cache-read-input-token-count")?;
    let write = get("x-amzn-bedrock-cache-write-input-token-count")?;
    if !found {
        return Ok(None);
    }
    let total_in = checked(checked(input, read, path)?, write, path)?;
    Ok(Some(TokenUsage {
        input_tokens: total_in,
        output_tokens: output,
        cache_read_input_tokens: read,
        cache_creation_input_tokens: write,
        ..TokenUsage::default()
    }))
}

fn checked(a: u64, b: u64, path: &Path<'_>) -> Result<u64, ExtractError> {
    a.checked_add(b).ok_or_else(|| ExtractError::Overflow {
        path: path.to_string(),
    })
}

fn invalid(path: &Path<'_>, value: &Node<'_>) -> ExtractError {
    let reason = match value {
        Node::Neg(i) => format!("{i} is negative"),
        // The literal is not echoed: serde_json already read it as a float.
        Node::Float(_) => "not an exact unsigned 64-bit integer: a fraction, a decimal point, an exponent, or beyond 64 bits".into(),
        Node::Str(s) => format!("{s:?} is a string, expected an integer"),
        Node::Bool(b) => format!("{b} is a boolean, expected an integer"),
        Node::Arr(_) => "an array, expected an integer".into(),
        Node::Obj(_) => "an object, expected an integer".into(),
        Node::Dropped => "a long string, expected an integer".into(),
        Node::Null | Node::U64(_) => "unexpected value".into(),
    };
    ExtractError::InvalidCount {
        path: path.to_string(),
        reason,
    }
}

/// Typed reads of one usage object.
struct Reader<'a, 'n> {
    obj: &'n Node<'n>,
    path: &'a Path<'a>,
}

impl Reader<'_, '_> {
    fn has_any(&self, keys: &[&str]) -> bool {
        keys.iter()
            .any(|k| self.obj.get(k).is_some_and(|v| !matches!(v, Node::Null)))
    }

    /// An exact unsigned count; absent and `null` are `None`.
    fn count(&self, key: &str) -> Result<Option<u64>, ExtractError> {
        match self.obj.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::U64(n)) => Ok(Some(*n)),
            Some(other) => Err(invalid(&Path::Key(self.path, key), other)),
        }
    }

    /// A count inside a detail object such as `prompt_tokens_details`.
    fn sub(&self, outer: &str, key: &str) -> Result<Option<u64>, ExtractError> {
        match self.obj.get(outer) {
            None | Some(Node::Null) => Ok(None),
            Some(inner @ Node::Obj(_)) => {
                let p = Path::Key(self.path, outer);
                Reader {
                    obj: inner,
                    path: &p,
                }
                .count(key)
            }
            Some(other) => {
                let p = Path::Key(self.path, outer);
                Err(ExtractError::InvalidCount {
                    path: p.to_string(),
                    reason: format!("expected an object, found {}", kind(other)),
                })
            }
        }
    }

    fn add(&self, a: u64, b: u64) -> Result<u64, ExtractError> {
        checked(a, b, self.path)
    }

    /// OpenAI Chat Completions and everything shaped like it (Azure, Groq,
    /// Mistral, DeepSeek, xAI, Ollama's and vLLM's OpenAI endpoints).
    fn openai_compatible(&self) -> Result<TokenUsage, ExtractError> {
        let hit = self.count("prompt_cache_hit_tokens")?;
        let miss = self.count("prompt_cache_miss_tokens")?;
        let input = match self.count("prompt_tokens")? {
            Some(p) => p,
            None => self.add(hit.unwrap_or(0), miss.unwrap_or(0))?,
        };
        let cache_read = match self.sub("prompt_tokens_details", "cached_tokens")? {
            Some(c) => c,
            None => match hit {
                Some(h) => h,
                None => self.count("cache_read_input_tokens")?.unwrap_or(0),
            },
        };
        let cache_creation = self.count("cache_creation_input_tokens")?.unwrap_or(0);
        let completion = self.count("completion_tokens")?.unwrap_or(0);
        let reasoning = self
            .sub("completion_tokens_details", "reasoning_tokens")?
            .unwrap_or(0);
        // Some providers (xAI) leave reasoning out of completion_tokens; their
        // total_tokens then adds it separately.
        let mut output = completion;
        if reasoning > 0
            && let Some(total) = self.count("total_tokens")?
        {
            let with = input
                .checked_add(completion)
                .and_then(|s| s.checked_add(reasoning));
            if Some(total) == with {
                output = self.add(completion, reasoning)?;
            }
        }
        Ok(TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: cache_read,
            cache_creation_input_tokens: cache_creation,
            cache_creation_1h_input_tokens: 0,
            reasoning_tokens: reasoning,
        })
    }

    /// Gemini and Vertex `usageMetadata` (camelCase, or snake_case as the
    /// Python SDK dumps it).
    fn gemini(&self) -> Result<TokenUsage, ExtractError> {
        let pick = |camel: &str, snake: &str| -> Result<u64, ExtractError> {
            Ok(match self.count(camel)? {
                Some(v) => v,
                None => self.count(snake)?.unwrap_or(0),
            })
        };
        let prompt = pick("promptTokenCount", "prompt_token_count")?;
        let tool = pick("toolUsePromptTokenCount", "tool_use_prompt_token_count")?;
        let candidates = pick("candidatesTokenCount", "candidates_token_count")?;
        let thoughts = pick("thoughtsTokenCount", "thoughts_token_count")?;
        let cached = pick("cachedContentTokenCount", "cached_content_token_count")?;
        let total = match self.count("totalTokenCount")? {
            Some(t) => Some(t),
            None => self.count("total_token_count")?,
        };
        let input = self.add(prompt, tool)?;
        // Thinking tokens are billed as output. Gemini reports them apart from
        // candidates; a total without them means they were already included.
        let output = if thoughts > 0 && total == input.checked_add(candidates) {
            candidates
        } else {
            self.add(candidates, thoughts)?
        };
        Ok(TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: cached,
            reasoning_tokens: thoughts,
            ..TokenUsage::default()
        })
    }

    /// LangChain `usage_metadata` (and Langflow's message usage): input
    /// already includes cache reads and writes.
    fn langchain(&self) -> Result<TokenUsage, ExtractError> {
        let input = self.count("input_tokens")?.unwrap_or(0);
        let output = self.count("output_tokens")?.unwrap_or(0);
        let read = self.sub("input_token_details", "cache_read")?.unwrap_or(0);
        let e5 = self.sub("input_token_details", "ephemeral_5m_input_tokens")?;
        let e1 = self.sub("input_token_details", "ephemeral_1h_input_tokens")?;
        let write = match self.sub("input_token_details", "cache_creation")? {
            Some(w) => w,
            None => self.add(e5.unwrap_or(0), e1.unwrap_or(0))?,
        };
        let reasoning = self.sub("output_token_details", "reasoning")?.unwrap_or(0);
        Ok(TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
            cache_creation_1h_input_tokens: e1.unwrap_or(0),
            reasoning_tokens: reasoning,
        })
    }

    /// OpenAI Responses API.
    fn responses(&self) -> Result<TokenUsage, ExtractError> {
        Ok(TokenUsage {
            input_tokens: self.count("input_tokens")?.unwrap_or(0),
            output_tokens: self.count("output_tokens")?.unwrap_or(0),
            cache_read_input_tokens: self
                .sub("input_tokens_details", "cached_tokens")?
                .unwrap_or(0),
            reasoning_tokens: self
                .sub("output_tokens_details", "reasoning_tokens")?
                .unwrap_or(0),
            ..TokenUsage::default()
        })
    }

    /// Anthropic Messages and Bedrock's camelCase usage: the input count
    /// leaves out cache reads and writes, which are added to it here. Also
    /// says which parts the object states (see [`Stated`]).
    fn anthropic_like(
        &self,
        input_key: &str,
        output_key: &str,
        read_key: &str,
        write_key: &str,
        total_key: &str,
    ) -> Result<(TokenUsage, Stated), ExtractError> {
        let raw_in = self.count(input_key)?;
        let raw = raw_in.unwrap_or(0);
        let out = self.count(output_key)?;
        let output = out.unwrap_or(0);
        let read_in = self.count(read_key)?;
        let read = read_in.unwrap_or(0);
        let e5 = self.sub("cache_creation", "ephemeral_5m_input_tokens")?;
        let e1 = self.sub("cache_creation", "ephemeral_1h_input_tokens")?;
        // Bedrock: `cacheDetails` splits the writes by TTL ("5m", "1h").
        let (detail_total, detail_1h) = self.cache_details()?;
        let write_in = self.count(write_key)?;
        let write = match write_in {
            Some(w) => w,
            None => match detail_total {
                Some(t) => t,
                None => self.add(e5.unwrap_or(0), e1.unwrap_or(0))?,
            },
        };
        let write_1h = e1.or(detail_1h);
        let thinking = self.sub("output_tokens_details", "thinking_tokens")?;
        let cached = self.add(read, write)?;
        // A total equal to input + output says the input already held the
        // cache tokens (some proxies re-shape usage that way).
        let included = cached > 0
            && self
                .count(total_key)?
                .is_some_and(|t| Some(t) == raw.checked_add(output));
        let input = if included {
            raw
        } else {
            self.add(raw, cached)?
        };
        let stated = Stated {
            uncached: raw_in.is_some(),
            read: read_in.is_some(),
            write: write_in.is_some() || e5.is_some() || e1.is_some() || detail_total.is_some(),
            write_1h: write_1h.is_some(),
            output: out.is_some(),
            reasoning: thinking.is_some(),
        };
        Ok((
            TokenUsage {
                input_tokens: input,
                output_tokens: output,
                cache_read_input_tokens: read,
                cache_creation_input_tokens: write,
                cache_creation_1h_input_tokens: write_1h.unwrap_or(0),
                reasoning_tokens: thinking.unwrap_or(0),
            },
            stated,
        ))
    }

    /// Bedrock's `cacheDetails: [{"ttl": "5m" | "1h", "inputTokens": n}]`:
    /// (all writes, one-hour writes), `None` when absent.
    fn cache_details(&self) -> Result<(Option<u64>, Option<u64>), ExtractError> {
        let items = match self.obj.get("cacheDetails") {
            None | Some(Node::Null) => return Ok((None, None)),
            Some(Node::Arr(items)) => items,
            Some(other) => {
                return Err(ExtractError::InvalidCount {
                    path: Path::Key(self.path, "cacheDetails").to_string(),
                    reason: format!("expected an array, found {}", kind(other)),
                });
            }
        };
        let dp = Path::Key(self.path, "cacheDetails");
        let (mut total, mut one_hour) = (0u64, 0u64);
        for (i, item) in items.iter().enumerate() {
            let p = Path::Idx(&dp, i);
            let r = Reader {
                obj: item,
                path: &p,
            };
            let n = r.count("inputTokens")?.unwrap_or(0);
            total = checked(total, n, &p)?;
            if item
                .str_of("ttl")
                .is_some_and(|t| t.eq_ignore_ascii_case("1h") || t.eq_ignore_ascii_case("T1H"))
            {
                one_hour = checked(one_hour, n, &p)?;
            }
        }
        Ok((Some(total), Some(one_hour)))
    }
}

fn kind(n: &Node<'_>) -> &'static str {
    match n {
        Node::Null => "null",
        Node::Bool(_) => "a boolean",
        Node::U64(_) | Node::Neg(_) | Node::Float(_) => "a number",
        Node::Str(_) | Node::Dropped => "a string",
        Node::Arr(_) => "an array",
        Node::Obj(_) => "an object",
    }
}
