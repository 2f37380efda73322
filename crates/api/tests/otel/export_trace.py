#!/usr/bin/env python3
"""Export a Langflow-style trace to an OTLP/HTTP receiver with real SDK clients.

Used by the Rust end-to-end tests of the OTLP receiver (see README.md here).

  export_trace.py --mode {otel,traceloop,langfuse} --base-url URL
                  [--api-key KEY] [--langfuse-public PK --langfuse-secret SK]
                  [--user-id ID] [--session-id S] [--flow-id UUID]
                  [--flow-name NAME] [--repeat-export] [--detached-llm]
                  [--no-metrics]

Modes:
  otel       opentelemetry-sdk + the OTLP/HTTP protobuf exporter (Bearer KEY to
             {BASE}/v1/traces), a hand-built trace shaped like Langflow's
             generic OTLP tracer, with LLM spans in three attribute dialects
             (current GenAI names, older OpenLLMetry names, OpenInference).
  traceloop  Traceloop.init(...) exactly as Langflow's Traceloop tracer does,
             and real openai client calls (to an in-process stand-in of the
             OpenAI API) recorded by opentelemetry-instrumentation-openai.
  langfuse   the Langfuse SDK v3 (Basic auth to {BASE}/api/public/otel/v1/traces,
             auth_check() first), a trace shaped like Langflow's Langfuse tracer,
             generations fed from real openai calls to the stand-in.

Prints one JSON line on stdout: what was sent and what the server must count
(input_tokens include cached tokens; output_tokens include reasoning tokens).
Exits non-zero, with the reason on stderr, when an export fails (any OTLP POST
not answered 2xx), when auth_check fails, or when the spans the SDK produced do
not carry the usage this script expects.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Set before any SDK import: no telemetry, nothing but 127.0.0.1.
os.environ["TRACELOOP_TELEMETRY"] = "false"
os.environ.setdefault("OTEL_SDK_DISABLED", "false")
for _var in ("TRACELOOP_BASE_URL", "TRACELOOP_API_KEY", "TRACELOOP_HEADERS",
             "TRACELOOP_METRICS_ENDPOINT", "TRACELOOP_METRICS_HEADERS",
             "LANGFUSE_BASE_URL", "LANGFUSE_HOST", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY",
             "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
             "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
             "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

# Component ids as Langflow writes them: "{ComponentType}-{5 chars}".
CHAT_INPUT = ("ChatInput-x1", "Chat Input")
OPENAI_COMPONENT = ("OpenAIModel-AbC12", "OpenAI")
ANTHROPIC_COMPONENT = ("AnthropicModel-Zz9", "Anthropic")
AGENT_COMPONENT = ("Agent-Q7w", "Agent")


def fail(msg: str) -> None:
    print(f"export_trace.py: FAILED: {msg}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)  # also ends the SDKs' background threads


# --------------------------------------------------------------------------
# Stand-in of the OpenAI API: recorded chat.completions response shapes.
# --------------------------------------------------------------------------

# One entry per call, in order; the numbers differ so double counting shows.
STAND_IN_RESPONSES = [
    {
        "request_model": "gpt-4o-mini",
        "model": "gpt-4o-mini-2024-07-18",
        "prompt_tokens": 1200, "completion_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 0,
        "content": "Paris is the capital of France.",
    },
    {
        "request_model": "o4-mini",
        "model": "o4-mini-2025-04-16",
        "prompt_tokens": 800, "completion_tokens": 100, "cached_tokens": 0, "reasoning_tokens": 64,
        "content": "The answer is 42.",
    },
]


def completion_body(n: int, rec: dict) -> dict:
    # Shape of a recorded non-streaming /v1/chat/completions response.
    return {
        "id": f"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ{n:03d}",
        "object": "chat.completion",
        "created": 1741570283,
        "model": rec["model"],
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": rec["content"],
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": rec["prompt_tokens"],
            "completion_tokens": rec["completion_tokens"],
            "total_tokens": rec["prompt_tokens"] + rec["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": rec["cached_tokens"], "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": rec["reasoning_tokens"],
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


class StandIn:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                with stand_in.lock:
                    n = stand_in.calls
                    stand_in.calls += 1
                rec = STAND_IN_RESPONSES[n % len(STAND_IN_RESPONSES)]
                body = json.dumps(completion_body(n, rec)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-request-id", f"req_{n:032x}")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def openai_client(stand_in: StandIn):
    import openai

    return openai.OpenAI(base_url=stand_in.url + "/v1", api_key="sk-test", max_retries=0, timeout=10)


def chat(client, rec: dict):
    return client.chat.completions.create(
        model=rec["request_model"],
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Answer in one sentence."},
        ],
    )


# --------------------------------------------------------------------------
# Export bookkeeping: every OTLP/HTTP export (spans and metrics), whichever SDK
# made the exporter, is recorded with its result.
# --------------------------------------------------------------------------

class Exports:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.span_posts: list[dict] = []  # {"ok", "spans": [ReadableSpan]}
        self.metric_posts: list[bool] = []
        self.errors: list[str] = []

    def all_spans(self):
        return [s for p in self.span_posts if p["ok"] for s in p["spans"]]


EXPORTS = Exports()


class _ErrorLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            with EXPORTS.lock:
                EXPORTS.errors.append(f"{record.name}: {record.getMessage()}")


def patch_exporters() -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult

    span_export = OTLPSpanExporter.export

    def export_spans(self, spans):
        spans = list(spans)
        result = span_export(self, spans)
        with EXPORTS.lock:
            EXPORTS.span_posts.append({"ok": result == SpanExportResult.SUCCESS, "spans": spans,
                                       "endpoint": self._endpoint})
        return result

    OTLPSpanExporter.export = export_spans

    metric_export = OTLPMetricExporter.export

    def export_metrics(self, metrics_data, *args, **kwargs):
        result = metric_export(self, metrics_data, *args, **kwargs)
        with EXPORTS.lock:
            EXPORTS.metric_posts.append(result == MetricExportResult.SUCCESS)
        return result

    OTLPMetricExporter.export = export_metrics

    handler = _ErrorLog()
    for name in ("opentelemetry.exporter", "opentelemetry.sdk", "langfuse"):
        logging.getLogger(name).addHandler(handler)


def check_exports(min_span_posts: int, metrics_expected: bool) -> None:
    failed = [p for p in EXPORTS.span_posts if not p["ok"]]
    if failed:
        fail(f"{len(failed)} of {len(EXPORTS.span_posts)} span export(s) to "
             f"{failed[0]['endpoint']} failed; logged: {EXPORTS.errors or 'nothing'}")
    if len(EXPORTS.span_posts) < min_span_posts:
        fail(f"expected at least {min_span_posts} span export(s), saw {len(EXPORTS.span_posts)}; "
             f"logged: {EXPORTS.errors or 'nothing'}")
    if metrics_expected:
        if not EXPORTS.metric_posts or not all(EXPORTS.metric_posts):
            fail(f"metrics export: results {EXPORTS.metric_posts}; logged: {EXPORTS.errors or 'nothing'}")
    if EXPORTS.errors:
        fail("the SDK logged export problems: " + " | ".join(EXPORTS.errors))


def hex_trace(tid: int) -> str:
    return f"{tid:032x}"


def hex_span(sid: int) -> str:
    return f"{sid:016x}"


def call_entry(span_id: int, component_id: str, model: str, inp: int, out: int, cache_read: int,
               reasoning: int) -> dict:
    return {"span_id": hex_span(span_id), "component_id": component_id, "model": model,
            "input_tokens": inp, "output_tokens": out, "cache_read_tokens": cache_read,
            "reasoning_tokens": reasoning}


def expect_attrs(span, expected: dict) -> None:
    attrs = dict(span.attributes or {})
    for k, v in expected.items():
        if attrs.get(k) != v:
            fail(f"span {span.name!r}: attribute {k} is {attrs.get(k)!r}, expected {v!r} "
                 f"(all: {sorted(attrs)})")


# --------------------------------------------------------------------------
# mode otel
# --------------------------------------------------------------------------

def run_otel(args) -> dict:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, set_span_in_context

    class Keep(SpanProcessor):
        def __init__(self):
            self.spans = []

        def on_end(self, span):
            self.spans.append(span)

    exporter = OTLPSpanExporter(endpoint=f"{args.base_url}/v1/traces",
                                headers={"Authorization": f"Bearer {args.api_key}"})
    provider = TracerProvider(resource=Resource.create({"service.name": "langflow"}))
    keep = Keep()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("langflow")

    trace_name = f"{args.flow_name} - {args.flow_id}"
    run_id = str(uuid.uuid4())
    root_attrs = {
        "langflow.trace_id": run_id,
        "langflow.trace_name": trace_name,
        "langflow.trace_type": "chain",
        "langflow.project_name": "Langflow",
        "flow_id": args.flow_id,
        "flow_name": args.flow_name,
    }
    if args.user_id:
        root_attrs["langflow.user_id"] = args.user_id
    if args.session_id:
        root_attrs["langflow.session_id"] = args.session_id

    calls = []
    root = tracer.start_span(trace_name, attributes=root_attrs)
    root_ctx = set_span_in_context(root)

    def component(comp, trace_type, inputs):
        cid, display = comp
        return tracer.start_span(f"{display} ({cid})", context=root_ctx, attributes={
            "trace_id": cid, "trace_name": f"{display} ({cid})", "trace_type": trace_type,
            "vertex_id": cid, "inputs": json.dumps(inputs)})

    c = component(CHAT_INPUT, "chain", {"input_value": "What is the capital of France?"})
    c.set_attribute("outputs", json.dumps({"message": "What is the capital of France?"}))
    c.end()

    # OpenAI component -> openai.chat with the current GenAI names (OpenLLMetry 0.4x+).
    c = component(OPENAI_COMPONENT, "llm", {"model_name": "gpt-4o-mini", "temperature": 0.1})
    llm = tracer.start_span("openai.chat", context=set_span_in_context(c), kind=SpanKind.CLIENT, attributes={
        "llm.request.type": "chat",
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ900",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.total_tokens": 1500,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.reasoning_tokens": 120,
    })
    calls.append(call_entry(llm.get_span_context().span_id, OPENAI_COMPONENT[0], "gpt-4o-mini-2024-07-18",
                            1200, 300, 1000, 120))
    llm.end()
    c.end()

    # Anthropic component -> anthropic.chat with the older names (OpenLLMetry before 2025).
    c = component(ANTHROPIC_COMPONENT, "llm", {"model_name": "claude-haiku-4-5"})
    llm = tracer.start_span("anthropic.chat", context=set_span_in_context(c), kind=SpanKind.CLIENT, attributes={
        "llm.request.type": "chat",
        "gen_ai.system": "Anthropic",
        "gen_ai.request.model": "claude-haiku-4-5",
        "gen_ai.usage.prompt_tokens": 640,
        "gen_ai.usage.completion_tokens": 85,
        "llm.usage.total_tokens": 725,
    })
    calls.append(call_entry(llm.get_span_context().span_id, ANTHROPIC_COMPONENT[0], "claude-haiku-4-5",
                            640, 85, 0, 0))
    llm.end()
    c.end()

    # Agent component -> an OpenInference (Arize/Phoenix) LLM span.
    c = component(AGENT_COMPONENT, "agent", {"input_value": "Plan a trip"})
    llm = tracer.start_span("ChatOpenAI", context=set_span_in_context(c), attributes={
        "openinference.span.kind": "LLM",
        "llm.provider": "openai",
        "llm.system": "openai",
        "llm.model_name": "gpt-4.1-nano-2025-04-14",
        "llm.token_count.prompt": 500,
        "llm.token_count.completion": 50,
        "llm.token_count.total": 550,
        "llm.token_count.prompt_details.cache_read": 100,
    })
    calls.append(call_entry(llm.get_span_context().span_id, AGENT_COMPONENT[0], "gpt-4.1-nano-2025-04-14",
                            500, 50, 100, 0))
    llm.end()
    c.end()

    root.set_attributes({"workflow_name": trace_name, "workflow_id": run_id})
    root.end()

    if not provider.force_flush(30_000):
        fail("force_flush timed out")
    if args.repeat_export:
        # The very same ReadableSpan objects (same trace and span ids) again.
        exporter.export(list(keep.spans))
    provider.shutdown()
    check_exports(2 if args.repeat_export else 1, metrics_expected=False)

    comps = [CHAT_INPUT, OPENAI_COMPONENT, ANTHROPIC_COMPONENT, AGENT_COMPONENT]
    return {
        "run_id": run_id,
        "trace_ids": [hex_trace(root.get_span_context().trace_id)],
        "components": [{"id": cid, "name": name} for cid, name in comps],
        "calls": calls,
    }


# --------------------------------------------------------------------------
# mode traceloop
# --------------------------------------------------------------------------

def run_traceloop(args) -> dict:
    if args.no_metrics:
        os.environ["TRACELOOP_METRICS_ENABLED"] = "false"
    from opentelemetry import metrics, trace
    from opentelemetry.trace import use_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from traceloop.sdk import Traceloop
    from traceloop.sdk.instruments import Instruments

    stand_in = StandIn()
    # As Langflow's TraceloopTracer.__init__ (app_name is Langflow's project name),
    # limited to the OpenAI instrumentation.
    Traceloop.init(
        app_name="Langflow",
        api_endpoint=args.base_url,
        api_key=args.api_key,
        disable_batch=True,
        telemetry_enabled=False,
        instruments={Instruments.OPENAI},
    )
    tracer = trace.get_tracer("langflow")
    propagator = TraceContextTextMapPropagator()
    carrier: dict = {}

    trace_name = f"{args.flow_name} - {args.flow_id}"
    run_id = str(uuid.uuid4())
    root = tracer.start_span(name=trace_name, start_time=time.time_ns())
    with use_span(root, end_on_exit=False):
        propagator.inject(carrier=carrier)
    if args.user_id:
        # Langflow's tracer sets no user; association properties are Traceloop's
        # way. They land on spans started after this call in this context (the
        # component and openai.chat spans), not on the root: the SDK writes them
        # on the current span only inside a @workflow/@task.
        props = {"user_id": args.user_id}
        if args.session_id:
            props["session_id"] = args.session_id
        Traceloop.set_association_properties(props)

    # add_trace: a component span whose parent is the root via the carrier.
    cid, display = OPENAI_COMPONENT
    comp = tracer.start_span(name=f"{display} ({cid})", context=propagator.extract(carrier=carrier),
                             start_time=time.time_ns())
    comp.set_attributes({
        "trace_id": cid, "trace_name": f"{display} ({cid})", "trace_type": "llm",
        "inputs": json.dumps({"input_value": "What is the capital of France?", "model_name": "gpt-4o-mini",
                              "temperature": 0.1}),
        "vertex_id": cid,
    })

    client = openai_client(stand_in)
    if args.detached_llm:
        # What Langflow itself does: the component span is never made current.
        responses = [chat(client, rec) for rec in STAND_IN_RESPONSES]
    else:
        with use_span(comp, end_on_exit=False):
            responses = [chat(client, rec) for rec in STAND_IN_RESPONSES]

    comp.set_attribute("outputs", json.dumps({"text_output": responses[0].choices[0].message.content}))
    comp.end()  # end_trace
    root.set_attributes({  # end
        "workflow_name": trace_name,
        "workflow_id": run_id,  # Langflow: str(self.trace_id), the run's id
        "outputs": json.dumps({"message": responses[-1].choices[0].message.content}),
        "flow_id": args.flow_id,
        "flow_name": args.flow_name,
    })
    root.end()

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush") and not provider.force_flush(30_000):
        fail("force_flush of the tracer provider timed out")
    mp = metrics.get_meter_provider()
    if hasattr(mp, "force_flush"):
        mp.force_flush(30_000)
    check_exports(3, metrics_expected=not args.no_metrics)
    stand_in.close()

    llm_spans = [s for s in EXPORTS.all_spans() if s.name == "openai.chat"]
    if len(llm_spans) != len(STAND_IN_RESPONSES):
        fail(f"expected {len(STAND_IN_RESPONSES)} openai.chat spans, exported: "
             f"{[s.name for s in EXPORTS.all_spans()]}")
    calls = []
    for span, rec in zip(llm_spans, STAND_IN_RESPONSES):
        expect_attrs(span, {
            "gen_ai.request.model": rec["request_model"],
            "gen_ai.response.model": rec["model"],
            "gen_ai.usage.input_tokens": rec["prompt_tokens"],
            "gen_ai.usage.output_tokens": rec["completion_tokens"],
        })
        # Detached, nothing ties the call to the component (or the flow).
        calls.append(call_entry(span.context.span_id, None if args.detached_llm else cid, rec["model"],
                                rec["prompt_tokens"],
                                rec["completion_tokens"], rec["cached_tokens"], rec["reasoning_tokens"]))
    trace_ids = []
    for s in EXPORTS.all_spans():
        t = hex_trace(s.context.trace_id)
        if t not in trace_ids:
            trace_ids.append(t)
    return {
        "run_id": run_id,
        "trace_ids": trace_ids,
        "components": [{"id": cid, "name": display}],
        "calls": calls,
    }


# --------------------------------------------------------------------------
# mode langfuse
# --------------------------------------------------------------------------

def langfuse_usage(usage) -> dict:
    """OpenAI usage -> Langfuse usage_details, as Langfuse's LangChain handler
    (the path Langflow's components take) turns LangChain's usage_metadata:
    input_token_details.cache_read -> input_cache_read (taken out of input),
    output_token_details.reasoning -> output_reasoning (taken out of output)."""
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    return {
        "input": max(0, usage.prompt_tokens - cached),
        "output": max(0, usage.completion_tokens - reasoning),
        "total": usage.total_tokens,
        "input_cache_read": cached,
        "output_reasoning": reasoning,
    }


def run_langfuse(args) -> dict:
    from langfuse import Langfuse

    stand_in = StandIn()
    lf = Langfuse(public_key=args.langfuse_public, secret_key=args.langfuse_secret, host=args.base_url)
    try:
        if not lf.auth_check():
            fail("Langfuse auth_check() returned False")
    except Exception as e:  # noqa: BLE001
        fail(f"Langfuse auth_check() raised {type(e).__name__}: {e}")

    trace_name = f"{args.flow_name} - {args.flow_id}"
    run_id = str(uuid.uuid4())
    root = lf.start_span(name=trace_name, input={"input_value": "What is the capital of France?"},
                         metadata={"flow_id": args.flow_id, "flow_name": args.flow_name, "run_id": run_id})
    root.update_trace(name=trace_name, user_id=args.user_id, session_id=args.session_id,
                      metadata={"flow_id": args.flow_id, "flow_name": args.flow_name})

    cid, display = OPENAI_COMPONENT
    comp = root.start_span(name=display, input={"model_name": "gpt-4o-mini", "temperature": 0.1},
                           metadata={"from_langflow_component": True, "component_id": cid, "trace_type": "llm"})
    client = openai_client(stand_in)
    calls = []
    for rec in STAND_IN_RESPONSES:
        resp = chat(client, rec)
        usage = langfuse_usage(resp.usage)
        start = getattr(comp, "start_observation", None)
        kwargs = dict(name="ChatOpenAI", model=resp.model, input=[{"role": "user", "content": "Answer."}],
                      model_parameters={"temperature": 0.1})
        gen = start(as_type="generation", **kwargs) if start else comp.start_generation(**kwargs)
        gen.update(output=resp.choices[0].message.content, usage_details=usage)
        gen.end()
        calls.append(call_entry(int(gen.id, 16), cid, rec["model"], rec["prompt_tokens"],
                                rec["completion_tokens"], rec["cached_tokens"], rec["reasoning_tokens"]))
    comp.update(output={"text_output": "Paris is the capital of France."})
    comp.end()
    root.update(output={"message": "The answer is 42."})
    root.end()
    trace_id = root.trace_id
    lf.flush()
    lf.shutdown()
    stand_in.close()
    check_exports(1, metrics_expected=False)

    gens = [s for s in EXPORTS.all_spans()
            if (s.attributes or {}).get("langfuse.observation.type") == "generation"]
    if len(gens) != len(STAND_IN_RESPONSES):
        fail(f"expected {len(STAND_IN_RESPONSES)} generations, exported: {[s.name for s in EXPORTS.all_spans()]}")
    for span, rec in zip(gens, STAND_IN_RESPONSES):
        expect_attrs(span, {"langfuse.observation.model.name": rec["model"]})
    return {
        "run_id": run_id,
        "trace_ids": [trace_id],
        "components": [{"id": cid, "name": display}],
        "calls": calls,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", required=True, choices=["otel", "traceloop", "langfuse"])
    p.add_argument("--base-url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", help="Bearer key (otel, traceloop)")
    p.add_argument("--langfuse-public", help="Langfuse public key (langfuse)")
    p.add_argument("--langfuse-secret", help="Langfuse secret key (langfuse)")
    p.add_argument("--user-id")
    p.add_argument("--session-id")
    p.add_argument("--flow-id", default=None, help="default: a new UUID")
    p.add_argument("--flow-name", default="Basic Prompting")
    p.add_argument("--repeat-export", action="store_true",
                   help="otel: export the same spans (same ids) a second time")
    p.add_argument("--detached-llm", action="store_true",
                   help="traceloop: do not make the component span current around the OpenAI calls, "
                        "as Langflow does not: the openai.chat spans then start traces of their own")
    p.add_argument("--no-metrics", action="store_true", help="traceloop: TRACELOOP_METRICS_ENABLED=false")
    args = p.parse_args()
    args.base_url = args.base_url.rstrip("/")
    args.flow_id = args.flow_id or str(uuid.uuid4())
    if args.mode in ("otel", "traceloop") and not args.api_key:
        p.error(f"--mode {args.mode} needs --api-key")
    if args.mode == "langfuse" and not (args.langfuse_public and args.langfuse_secret):
        p.error("--mode langfuse needs --langfuse-public and --langfuse-secret")
    if args.repeat_export and args.mode != "otel":
        p.error("--repeat-export is for --mode otel")

    # The SDKs print banners to stdout: keep stdout for the one JSON line.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    patch_exporters()
    run = {"otel": run_otel, "traceloop": run_traceloop, "langfuse": run_langfuse}[args.mode]
    try:
        out = run(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001
        fail(f"{type(e).__name__}: {e}")
    result = {
        "mode": args.mode,
        "trace_ids": out["trace_ids"],
        "user_id": args.user_id,
        "session_id": args.session_id,
        "flow_id": args.flow_id,
        "flow_name": args.flow_name,
        "run_id": out["run_id"],
        "components": out["components"],
        "calls": out["calls"],
        "span_posts": len(EXPORTS.span_posts),
        "metric_posts": len(EXPORTS.metric_posts),
    }
    real_stdout.write(json.dumps(result) + "\n")
    real_stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: everything is flushed and checked; the SDKs'
    # atexit hooks would only export again (metrics) or wait on threads.
    os._exit(0)


if __name__ == "__main__":
    main()
