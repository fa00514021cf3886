"""A loopback Ollama stand-in that behaves like the real server on the wire.

Real HTTP/1.1 on 127.0.0.1: chunked NDJSON streams (one chunk per token), headers only after a
cold model load, plain-text 404/405, ``{"error"}`` bodies, 503 when busy, in-band errors after a 200,
zero-valued counters omitted, nanosecond durations measured from its own real sleeps.

Faults are switched on with ``state.configure(fault=...)`` in-process or ``POST /_standin/config``
from another process: ``cut`` (chunked body cut mid-line), ``cut_close`` (close-delimited body cut
mid-line), ``inband`` (an error line after ``fault_after`` tokens), ``busy`` (503), ``stall`` (no data
for ``stall_s`` after ``fault_after`` tokens), ``no_done`` (clean end without ``done: true``),
``pull_die`` (connection dropped mid-pull), ``pull_inband`` (an error line mid-pull, after ``stall_s``).
A request with a JSON-schema ``format`` gets JSON fitting the schema, or, with ``format_mode``,
``bad_json`` / ``wrong_shape`` / ``unknown_enum`` answers (for the product studio's checks).
``model_tokens_per_second`` and ``model_faults`` (keyed by model name, empty by default) slow down or
break one model only.

Profiles (``tests/profiles/``) switch the whole habit of a host at once: which models it has, how its
models answer (``responder``), how fast. ``state.apply_profile(name)`` in-process, ``POST /_standin/config``
with ``{"profile": name}``, or ``python -m tests.standin --profile NAME``. ``SilentHost`` is the rough host
that accepts connections and never answers. ``python -m tests.standin --port 11434`` serves it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import jwt

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
GIB = 1024**3


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _model_record(name: str, size: int, family: str, params: str, quant: str,
                  capabilities: list[str], context_length: int = 8192) -> dict[str, Any]:
    return {
        "name": name,
        "size": size,
        "digest": _digest(name),
        "modified_at": "2026-11-01T10:00:00.123456789+01:00",
        "family": family,
        "parameter_size": params,
        "quantization_level": quant,
        "capabilities": capabilities,
        "context_length": context_length,
    }


def default_models() -> dict[str, dict[str, Any]]:
    records = [
        _model_record("llama3.2:1b", 1_321_098_329, "llama", "1.2B", "Q8_0", ["completion", "tools"], 131072),
        _model_record("qwen3:0.6b", 522_653_767, "qwen3", "751.63M", "Q4_K_M",
                      ["completion", "tools", "thinking"], 40960),
        _model_record("phi3:mini", 2_176_178_913, "phi3", "3.8B", "Q4_0", ["completion"], 131072),
        _model_record("nomic-embed-text:latest", 274_302_450, "nomic-bert", "137M", "F16", ["embedding"], 2048),
    ]
    return {r["name"]: r for r in records}


def default_registry() -> dict[str, list[tuple[str, int]]]:
    """Pullable names and their layers (digest, size); small sizes keep test pulls quick."""

    def layers(name: str, weights: int) -> list[tuple[str, int]]:
        return [(_digest(name + ":weights"), weights), (_digest(name + ":template"), 1_429),
                (_digest(name + ":license"), 7_711), (_digest(name + ":params"), 96)]

    names = {"gemma2:2b": 40_000_000, "mistral:7b": 80_000_000, "qwen2.5:0.5b": 20_000_000,
             "llama3.2:1b": 30_000_000, "phi3:mini": 30_000_000, "qwen3:0.6b": 20_000_000}
    return {name: layers(name, size) for name, size in names.items()}


@dataclass
class StandinConfig:
    tokens_per_second: float = 200.0
    reply_tokens: int = 30
    thinking_tokens: int = 6
    load_delay_s: float = 0.0
    model_load_delay_s: dict[str, float] = field(default_factory=dict)  # a model slower to load than the rest
    fault: str | None = None
    fault_after: int = 5
    stall_s: float = 5.0
    fault_message: str = "llama runner process has terminated: exit status 2"
    replies: dict[str, str] = field(default_factory=dict)
    gpu_fraction: float = 0.6
    pull_bytes_per_s: float = 50_000_000.0
    pull_interval_s: float = 0.02
    parallel: int = 0
    request_time_s: float = 0.0
    format_mode: str = "fit"
    # Per-model overrides (empty by default): a slow column, or a fault on one model only.
    model_tokens_per_second: dict[str, float] = field(default_factory=dict)
    model_faults: dict[str, str] = field(default_factory=dict)
    split_lines: bool = False
    blank_lines: bool = False
    # Monitoring: seconds /api/version, /api/tags and /api/ps wait before answering (a slow host).
    read_delay_s: float = 0.0
    # The company gateway's /ai/* surface (always served): with a secret, it checks the Bearer JWT like
    # the real gateway; ``redirect_to`` answers every request with a 307 to that URL.
    gateway_secret: str = ""
    gateway_audience: str = "ai-gateway"
    redirect_to: str = ""

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, value)


class StandinState:
    """Everything the stand-in knows; shared by its handler threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config = StandinConfig()
        self.models = default_models()
        self.registry = default_registry()
        self.loaded: dict[str, dict[str, Any]] = {}
        self.pulled_bytes: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        # The dashboard's health prober (header X-Dashboard-Probe) is counted apart, so tests that
        # count a page's own requests in ``requests`` are not disturbed by it.
        self.probe_requests: list[dict[str, Any]] = []
        self.open_connections: set[socket.socket] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.responder: Callable[[dict[str, Any]], str] | None = None
        self.finals: list[dict[str, Any]] = []  # the final lines sent, newest last (what a page must show)
        self._slots: threading.Semaphore | None = None

    def apply_profile(self, name: str) -> None:
        """Reset, then take on a named profile's models, replies and speeds (``tests.profiles``)."""
        from tests.profiles import apply_profile

        with self.lock:
            self.reset()
            apply_profile(self, name)

    def configure(self, **values: Any) -> None:
        with self.lock:
            profile = values.pop("profile", None)
            if profile is not None:
                self.apply_profile(str(profile))
            self.config.update(values)
            self._slots = threading.Semaphore(self.config.parallel) if self.config.parallel else None

    def reset(self) -> None:
        with self.lock:
            self.__init__()  # type: ignore[misc]

    def log(self, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
        if headers.get("x-dashboard-probe"):
            with self.lock:
                self.probe_requests.append({"method": method, "path": path, "at": time.time()})
                del self.probe_requests[:-500]
            return
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body, "headers": headers,
                                  "at": time.time()})
            del self.requests[:-500]

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def find_model(self, name: str) -> dict[str, Any] | None:
        wanted = name if ":" in name.split("/")[-1] else f"{name}:latest"
        with self.lock:
            for key, record in self.models.items():
                if key.lower() == wanted.lower():
                    return record
        return None

    def mark_loaded(self, name: str, keep_alive: Any) -> None:
        record = self.find_model(name)
        if record is None:
            return
        seconds = _keep_alive_seconds(keep_alive)
        with self.lock:
            if seconds == 0:
                self.loaded.pop(record["name"], None)
                return
            expires = (datetime.now(UTC) + timedelta(days=365 * 292)) if seconds < 0 else (
                datetime.now(UTC) + timedelta(seconds=seconds))
            size = int(record["size"] * 1.25)
            self.loaded[record["name"]] = {
                "expires_at": expires, "size": size,
                "size_vram": int(size * self.config.gpu_fraction), "context_length": 4096,
            }

    def is_loaded(self, name: str) -> bool:
        record = self.find_model(name)
        with self.lock:
            if record is None or record["name"] not in self.loaded:
                return False
            if self.loaded[record["name"]]["expires_at"] < datetime.now(UTC):
                del self.loaded[record["name"]]
                return False
            return True


def _keep_alive_seconds(value: Any) -> float:
    if value is None:
        return 300.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    if text == "0":
        return 0.0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    for unit in ("ms", "h", "m", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError("time: missing unit in duration")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


class ClientGone(Exception):
    """The client closed the connection while we were writing."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OllamaStandin/0.1"
    state: StandinState

    def setup(self) -> None:
        super().setup()
        with self.state.lock:
            self.state.open_connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.state.lock:
                self.state.open_connections.discard(self.connection)
        # Go's net/http (the real Ollama) sets TCP_NODELAY; without it Nagle adds ~40 ms per token burst.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ---- plumbing ----------------------------------------------------------------------------
    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return raw

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _text(self, status: int, text: str) -> None:
        self._send_bytes(status, text.encode(), "text/plain; charset=utf-8")

    def _start_stream(self, chunked: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._chunked = chunked

    def _write(self, data: bytes) -> None:
        try:
            if self._chunked:
                self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            else:
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            with self.state.lock:
                self.state.disconnects += 1
            self.close_connection = True
            raise ClientGone() from None

    def _line(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode() + b"\n"
        if self.state.config.split_lines and len(data) > 8:
            # One JSON line in two chunks, flushed separately: the client must reassemble it.
            self._write(data[: len(data) // 2])
            time.sleep(0.002)
            data = data[len(data) // 2 :]
        self._write(data)
        if self.state.config.blank_lines:
            self._write(b"\n")

    def _end_stream(self) -> None:
        if self._chunked:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    def _abort_connection(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- routing -----------------------------------------------------------------------------
    ROUTES: ClassVar[dict[str, tuple[str, ...]]] = {
        "/": ("GET", "HEAD"), "/api/version": ("GET", "HEAD"), "/api/tags": ("GET", "HEAD"),
        "/api/ps": ("GET",), "/api/show": ("POST",), "/api/chat": ("POST",), "/api/generate": ("POST",),
        "/api/pull": ("POST",), "/api/delete": ("DELETE",), "/api/copy": ("POST",), "/api/embed": ("POST",),
        "/_standin/config": ("POST",), "/_standin/reset": ("POST",), "/_standin/log": ("GET",),
    }

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    GATEWAY_ALIASES: ClassVar[dict[str, str]] = {"/ai/chat": "/api/chat", "/ai/generate": "/api/generate",
                                                 "/ai/models": "/api/tags"}

    def _gateway_refusal(self) -> str:
        """Why the gateway refuses this request's token ('' when it accepts it)."""
        secret = self.state.config.gateway_secret
        if not secret:
            return ""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return "missing bearer token"
        try:
            jwt.decode(auth[7:], secret, algorithms=["HS256"], audience=self.state.config.gateway_audience,
                       options={"require": ["exp", "iat", "sub", "jti"]})
        except jwt.PyJWTError as exc:
            return f"invalid token: {exc}"
        return ""

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?")[0]
        raw = self._body() if method in ("POST", "DELETE") else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.state.config.redirect_to and not path.startswith("/_standin"):
            self.state.log(method, path, None, headers)
            self.send_response(307)
            self.send_header("Location", self.state.config.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        logged_method, logged_path = method, path
        if path.startswith("/ai/"):
            refusal = self._gateway_refusal()
            if refusal:
                self.state.log(method, path, None, headers)
                self._error(401, refusal)
                return
            if path.startswith("/ai/models/") and method == "GET":
                name = urllib.parse.unquote(path.removeprefix("/ai/models/"))
                method, path, raw = "POST", "/api/show", json.dumps({"model": name}).encode()
            else:
                path = self.GATEWAY_ALIASES.get(path, path)
        allowed = self.ROUTES.get(path)
        if allowed is None:
            self._text(404, "404 page not found")
            return
        if method not in allowed:
            self._text(405, "405 method not allowed")
            return
        body: Any = None
        if method in ("POST", "DELETE") and not path.startswith("/_standin"):
            if not raw:
                self._error(400, "missing request body")
                return
            try:
                body = json.loads(raw)
            except ValueError as exc:
                self._error(400, f"invalid character in JSON: {exc}")
                return
            if not isinstance(body, dict):
                self._error(400, "json: cannot unmarshal into Go value of type api.Request")
                return
        elif raw:
            body = json.loads(raw)
        self.state.log(logged_method, logged_path, body, headers)
        handler = getattr(self, "route_" + (path.strip("/").replace("/", "_") or "root"))
        try:
            handler(method, body)
        except ClientGone:
            return

    # ---- control -----------------------------------------------------------------------------
    def route__standin_config(self, method: str, body: Any) -> None:
        try:
            self.state.configure(**(body or {}))
        except KeyError as exc:
            self._error(400, f"unknown setting {exc}")
            return
        self._json(200, {"ok": True})

    def route__standin_reset(self, method: str, body: Any) -> None:
        self.state.reset()
        self._json(200, {"ok": True})

    def route__standin_log(self, method: str, body: Any) -> None:
        with self.state.lock:
            self._json(200, {"requests": self.state.requests, "disconnects": self.state.disconnects,
                             "max_in_flight": self.state.max_in_flight})

    # ---- read-only ---------------------------------------------------------------------------
    def route_root(self, method: str, body: Any) -> None:
        self._text(200, "" if method == "HEAD" else "Ollama is running")

    def _read_delay(self) -> None:
        delay = self.state.config.read_delay_s
        if delay > 0:
            time.sleep(delay)

    def route_api_version(self, method: str, body: Any) -> None:
        self._read_delay()
        self._json(200, {"version": "0.33.0"})

    def route_api_tags(self, method: str, body: Any) -> None:
        self._read_delay()
        with self.state.lock:
            models = [self._tag_entry(r) for r in self.state.models.values()]
        self._json(200, {"models": models})

    @staticmethod
    def _details(record: dict[str, Any]) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": record["family"],
                "families": [record["family"]], "parameter_size": record["parameter_size"],
                "quantization_level": record["quantization_level"]}

    def _tag_entry(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"name": record["name"], "model": record["name"], "modified_at": record["modified_at"],
                "size": record["size"], "digest": record["digest"], "details": self._details(record),
                "capabilities": record["capabilities"]}  # newer builds (about v0.30) list them here

    def route_api_ps(self, method: str, body: Any) -> None:
        self._read_delay()
        out = []
        with self.state.lock:
            names = list(self.state.loaded)
        for name in names:
            if not self.state.is_loaded(name):
                continue
            record = self.state.find_model(name)
            info = self.state.loaded.get(name)
            if record is None or info is None:
                continue
            out.append({"name": name, "model": name, "size": info["size"], "digest": record["digest"],
                        "details": self._details(record), "size_vram": info["size_vram"],
                        "expires_at": info["expires_at"].isoformat().replace("+00:00", "Z"),
                        "context_length": info["context_length"]})
        out.sort(key=lambda m: m["expires_at"], reverse=True)
        self._json(200, {"models": out})

    def _require_model(self, body: dict[str, Any]) -> dict[str, Any] | None:
        name = body.get("model") or body.get("name") or ""
        if not name:
            self._error(400, "model is required")
            return None
        record = self.state.find_model(name)
        if record is None:
            self._error(404, f"model '{name}' not found")
            return None
        return record

    def route_api_show(self, method: str, body: dict[str, Any]) -> None:
        record = self._require_model(body)
        if record is None:
            return
        arch = record["family"]
        self._json(200, {
            "license": "Stand-in License\nFor tests only.",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {record['name']}\n"
                         'PARAMETER stop "<|eot_id|>"\nPARAMETER temperature 0.7\n',
            "parameters": 'stop                           "<|eot_id|>"\ntemperature                    0.7',
            "template": "{{ .System }}\n{{ .Prompt }}",
            "system": "You are a helpful assistant.",
            "details": self._details(record),
            "model_info": {"general.architecture": arch, "general.parameter_count": 1_235_814_432,
                           f"{arch}.context_length": record["context_length"], "tokenizer.ggml.tokens": None},
            "capabilities": record["capabilities"],
            "modified_at": record["modified_at"],
        })

    # ---- generation --------------------------------------------------------------------------
    def route_api_chat(self, method: str, body: dict[str, Any]) -> None:
        self._generate(body, chat=True)

    def route_api_generate(self, method: str, body: dict[str, Any]) -> None:
        self._generate(body, chat=False)

    def _reply_text(self, body: dict[str, Any], prompt: str) -> list[str]:
        config = self.state.config
        if self.state.responder is not None:
            text = self.state.responder(body)
            return _tokenize(text)
        for needle, reply in config.replies.items():
            if needle in prompt:
                return _tokenize(reply)
        if isinstance(body.get("format"), dict):
            return _tokenize(_json_for_schema(body["format"], config.format_mode))
        count = max(int(config.reply_tokens), 1)
        return [f"t{i:04d} " for i in range(1, count)] + ["END."]

    def _generate(self, body: dict[str, Any], *, chat: bool) -> None:
        config = self.state.config
        record = self._require_model(body)
        if record is None:
            return
        if config.fault == "busy":
            self._error(503, BUSY_MESSAGE)
            return
        if "embedding" in record["capabilities"]:
            self._error(400, f"\"{record['name']}\" does not support {'chat' if chat else 'generate'}")
            return
        think = body.get("think")
        if think and "thinking" not in record["capabilities"]:
            self._error(400, f"\"{record['name']}\" does not support thinking")
            return
        if "keep_alive" in body:
            try:
                _keep_alive_seconds(body["keep_alive"])
            except ValueError as exc:
                self._error(400, str(exc))
                return
        messages = body.get("messages") or []
        prompt = body.get("prompt") or ""
        started = time.perf_counter_ns()
        cold = not self.state.is_loaded(record["name"])
        load_delay = config.model_load_delay_s.get(record["name"], config.load_delay_s)
        if cold and load_delay:
            time.sleep(load_delay)
        load_ns = time.perf_counter_ns() - started if cold else 0
        self.state.mark_loaded(record["name"], body.get("keep_alive"))
        load_only = (chat and not messages) or (not chat and not prompt)
        if load_only:
            reason = "unload" if _keep_alive_seconds(body.get("keep_alive")) == 0 else "load"
            payload: dict[str, Any] = {"model": body["model"], "created_at": _now_rfc3339(), "done": True,
                                       "done_reason": reason}
            payload.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
            self._json(200, payload)
            return
        text_in = prompt if not chat else "\n".join(str(m.get("content", "")) for m in messages)
        tokens = self._reply_text(body, text_in)
        thinking = (["Let ", "me ", "think ", "about ", "this. ", "Okay. "][: config.thinking_tokens]
                    if "thinking" in record["capabilities"] and think is not False else [])
        slots = self.state._slots
        if slots is not None:
            slots.acquire()
        with self.state.lock:
            self.state.in_flight += 1
            self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)
        self._in_flight_counted = True
        try:
            if body.get("stream", True) is False:
                self._generate_whole(body, chat, tokens, thinking, text_in, started, load_ns)
            else:
                self._generate_stream(body, chat, tokens, thinking, text_in, started, load_ns)
        finally:
            self._leave_flight()
            if slots is not None:
                slots.release()

    def _leave_flight(self) -> None:
        """Stop counting a request as in flight just before its last line goes out: from then on the client
        may send its next request, and ``max_in_flight`` must measure the client, not this thread's cleanup."""
        if getattr(self, "_in_flight_counted", False):
            self._in_flight_counted = False
            with self.state.lock:
                self.state.in_flight -= 1

    def _final(self, body: dict[str, Any], chat: bool, text_in: str, started: int, load_ns: int,
               eval_count: int, eval_ns: int) -> dict[str, Any]:
        prompt_tokens = max(len(text_in.split()), 1)
        final: dict[str, Any] = {"model": body["model"], "created_at": _now_rfc3339(), "done": True,
                                 "done_reason": "stop", "total_duration": time.perf_counter_ns() - started,
                                 "load_duration": load_ns, "prompt_eval_count": prompt_tokens,
                                 "prompt_eval_duration": 1_000 * prompt_tokens, "eval_count": eval_count,
                                 "eval_duration": eval_ns}
        final.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
        if not chat:
            final["context"] = [1, 2, 3]
        final = {k: v for k, v in final.items() if v != 0}  # Ollama omits zero-valued counters
        with self.state.lock:
            self.state.finals.append(final)
            del self.state.finals[:-100]
        return final

    def _generate_whole(self, body: dict[str, Any], chat: bool, tokens: list[str], thinking: list[str],
                        text_in: str, started: int, load_ns: int) -> None:
        eval_started = time.perf_counter_ns()
        delay = max(self.state.config.request_time_s, 0.0)
        if delay:
            time.sleep(delay)
        final = self._final(body, chat, text_in, started, load_ns, len(tokens) + len(thinking),
                            max(time.perf_counter_ns() - eval_started, 1))
        if chat:
            final["message"] = {"role": "assistant", "content": "".join(tokens)}
            if thinking:
                final["message"]["thinking"] = "".join(thinking)
        else:
            final["response"] = "".join(tokens)
        self._leave_flight()
        self._json(200, final)

    def _generate_stream(self, body: dict[str, Any], chat: bool, tokens: list[str], thinking: list[str],
                         text_in: str, started: int, load_ns: int) -> None:
        config = self.state.config
        fault = config.fault or config.model_faults.get(str(body.get("model")))
        self._start_stream(chunked=fault != "cut_close")
        pieces = [("thinking", t) for t in thinking] + [("content", t) for t in tokens]
        rate = max(float(config.model_tokens_per_second.get(str(body.get("model")), config.tokens_per_second)), 0.001)
        per_request = config.request_time_s
        interval = per_request / max(len(pieces), 1) if per_request else 1.0 / rate
        eval_started = time.perf_counter()
        for index, (kind, piece) in enumerate(pieces):
            if fault in ("cut", "cut_close", "inband", "stall") and index == config.fault_after:
                if fault == "inband":
                    self._line({"error": config.fault_message})
                    self._end_stream()
                    return
                if fault == "stall":
                    time.sleep(config.stall_s)
                else:
                    self._write(b'{"model":"' + body["model"].encode() + b'","mess')
                    self._abort_connection()
                    return
            target = eval_started + (index + 1) * interval
            pause = target - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            created = _now_rfc3339()
            if chat:
                message = {"role": "assistant", "content": piece if kind == "content" else ""}
                if kind == "thinking":
                    message["thinking"] = piece
                self._line({"model": body["model"], "created_at": created, "message": message, "done": False})
            else:
                line = {"model": body["model"], "created_at": created,
                        "response": piece if kind == "content" else "", "done": False}
                if kind == "thinking":
                    line["thinking"] = piece
                self._line(line)
        eval_ns = int((time.perf_counter() - eval_started) * 1e9)
        if fault == "no_done":
            self._end_stream()
            return
        self._leave_flight()
        self._line(self._final(body, chat, text_in, started, load_ns, len(pieces), eval_ns))
        self._end_stream()

    def route_api_embed(self, method: str, body: dict[str, Any]) -> None:
        record = self._require_model(body)
        if record is None:
            return
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            self._error(400, "invalid input type")
            return
        vectors = []
        for text in inputs:
            raw = [((b / 255.0) - 0.5) for b in hashlib.sha256(str(text).encode()).digest()[:16]]
            norm = math.sqrt(sum(v * v for v in raw)) or 1.0
            vectors.append([v / norm for v in raw])
        self._json(200, {"model": body["model"], "embeddings": vectors, "total_duration": 1_234_567,
                         "prompt_eval_count": sum(len(str(t).split()) for t in inputs)})

    # ---- model management --------------------------------------------------------------------
    def route_api_delete(self, method: str, body: dict[str, Any]) -> None:
        record = self._require_model(body)
        if record is None:
            return
        with self.state.lock:
            self.state.models.pop(record["name"], None)
        self._send_bytes(200, b"", "text/plain")

    def route_api_copy(self, method: str, body: dict[str, Any]) -> None:
        source, destination = body.get("source", ""), body.get("destination", "")
        record = self.state.find_model(source)
        if record is None:
            self._error(404, f'model "{source}" not found')
            return
        if not destination or destination.startswith(".."):
            self._error(400, f'destination "{destination}" is invalid')
            return
        dest = destination if ":" in destination else f"{destination}:latest"
        with self.state.lock:
            self.state.models[dest] = {**record, "name": dest}
        self._send_bytes(200, b"", "text/plain")

    def route_api_pull(self, method: str, body: dict[str, Any]) -> None:
        config = self.state.config
        name = body.get("model") or body.get("name") or ""
        if not name:
            self._error(400, "model is required")
            return
        full = name if ":" in name.split("/")[-1] else f"{name}:latest"
        layers = self.state.registry.get(full)
        if body.get("stream", True) is False:
            if layers is None:
                self._error(500, "pull model manifest: file does not exist")
                return
            self._finish_pull(full, layers)
            self._json(200, {"status": "success"})
            return
        self._start_stream()
        self._line({"status": "pulling manifest"})
        if layers is None:
            time.sleep(0.05)
            self._line({"error": "pull model manifest: file does not exist"})
            self._end_stream()
            return
        started = time.perf_counter()
        for digest, total in layers:
            done = min(self.state.pulled_bytes.get(digest, 0), total)
            status = f"pulling {digest[:12]}"
            line: dict[str, Any] = {"status": status, "digest": f"sha256:{digest}", "total": total}
            if done:
                line["completed"] = done
            self._line(line)
            while done < total:
                time.sleep(config.pull_interval_s)
                done = min(total, done + int(config.pull_bytes_per_s * config.pull_interval_s) + 1)
                with self.state.lock:
                    self.state.pulled_bytes[digest] = done
                if config.fault == "pull_die" and time.perf_counter() - started > config.stall_s:
                    self._abort_connection()
                    return
                if config.fault == "pull_inband" and time.perf_counter() - started > config.stall_s:
                    self._line({"error": config.fault_message})
                    self._end_stream()
                    return
                self._line({"status": status, "digest": f"sha256:{digest}", "total": total,
                            "completed": done})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._line({"status": status})
        self._finish_pull(full, layers)
        self._line({"status": "success"})
        self._end_stream()

    def _finish_pull(self, full: str, layers: list[tuple[str, int]]) -> None:
        family = full.split(":")[0].split("/")[-1].rstrip("0123456789.")
        with self.state.lock:
            self.state.models[full] = _model_record(full, sum(size for _, size in layers), family or "llama",
                                                    "1B", "Q4_K_M", ["completion"])
            self.state.models[full]["digest"] = _digest(full + ":manifest")


def _sample_for(schema: Any, mode: str) -> Any:
    """A value fitting a JSON schema (the first enum choice, empty containers); ``unknown_enum`` breaks enums."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        choices = [c for c in schema["enum"] if c is not None] or [None]
        return "Not A Real Choice" if mode == "unknown_enum" else choices[0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _sample_for(sub, mode) for key, sub in props.items()}
    if kind == "array":
        return [_sample_for(schema.get("items") or {"type": "string"}, mode)]
    return {"string": "stand-in value", "number": 1.5, "integer": 1, "boolean": True}.get(str(kind))


def _json_for_schema(schema: dict[str, Any], mode: str) -> str:
    """What a model constrained by ``format`` answers: ``format_mode`` fit | bad_json | wrong_shape | unknown_enum."""
    if mode == "bad_json":
        return '{"specifications": {"power": "1200 W"'
    if mode == "wrong_shape":
        return json.dumps(["not", "an", "object"])
    return json.dumps(_sample_for(schema, mode), ensure_ascii=False)


def _tokenize(text: str) -> list[str]:
    """Split a reply into word-sized tokens, keeping the spaces, so joining gives the text back."""
    pieces: list[str] = []
    current = ""
    for char in text:
        current += char
        if char in " \n":
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces or [""]


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up mid-response is routine here (Stop, aborted pulls, closed tabs): not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class StandinServer:
    """Run the stand-in on a loopback port in a background thread: ``with StandinServer() as s: s.url``."""

    def __init__(self, port: int = 0, state: StandinState | None = None) -> None:
        self.state = state or StandinState()
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="standin", daemon=True)

    def start(self) -> StandinServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def halt(self) -> None:
        """A real outage: stop listening and drop every open keep-alive connection (refused from now on)."""
        self.stop()
        with self.state.lock:
            connections = list(self.state.open_connections)
            self.state.open_connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentHost:
    """A host that accepts every connection, reads the request, and never answers (a hung Ollama, a black-holed
    proxy). ``requests`` keeps each request's first line and whether it came from the dashboard's prober."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[dict[str, Any]] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-host", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self._lock:
                self._held.append(conn)
            threading.Thread(target=self._read_head, args=(conn,), daemon=True).start()

    def _read_head(self, conn: socket.socket) -> None:
        head = b""
        conn.settimeout(5.0)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        lines = head.decode("latin-1").split("\r\n")
        probe = any(line.lower().startswith("x-dashboard-probe:") for line in lines)
        with self._lock:
            self.requests.append({"line": lines[0], "probe": probe, "at": time.time()})
        # ...and never a byte back.

    def page_requests(self) -> list[str]:
        """The request lines of everything but the prober, oldest first."""
        with self._lock:
            return [r["line"] for r in self.requests if not r["probe"]]

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(2)
        with self._lock:
            for conn in self._held:
                conn.close()
        self.sock.close()

    def __enter__(self) -> SilentHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(url: str, timeout_s: float = 15.0) -> bool:
    """Whether a stand-in answers ``/api/version`` at ``url`` within ``timeout_s`` (for ``make demo``)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/api/version", timeout=1) as answer:
            return answer.status == 200
        time.sleep(0.1)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the loopback Ollama stand-in.")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--profile", default="", help="a profile from tests/profiles (e.g. demo)")
    parser.add_argument("--wait-for", metavar="URL", help="do not serve: wait until a stand-in answers at URL")
    parser.add_argument("--tokens-per-second", type=float, default=40.0)
    parser.add_argument("--reply-tokens", type=int, default=120)
    parser.add_argument("--load-delay", type=float, default=1.5, help="seconds a cold model takes to load")
    args = parser.parse_args()
    if args.wait_for:
        raise SystemExit(0 if wait_for(args.wait_for) else f"nothing answers at {args.wait_for}")
    server = StandinServer(port=args.port)
    if args.profile:
        server.state.apply_profile(args.profile)
    else:
        server.state.configure(tokens_per_second=args.tokens_per_second, reply_tokens=args.reply_tokens,
                               load_delay_s=args.load_delay)
    print(f"Ollama stand-in on {server.url} (Ctrl-C to stop)")
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
