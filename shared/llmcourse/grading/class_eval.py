"""Day 3's model dimensions for a whole class on ONE vLLM server, every learner's adapter under its own name.

Usage::

    llmcourse grade autograde day3                        # the batch uses it (rubric.yaml: class_server.enabled)
    llmcourse grade autograde day3 --class-server off     # the per-learner path: a model load and an API per learner

    from llmcourse.grading.class_eval import class_evidence, use_class_server
    from llmcourse.grading.rubric import load_rubric
    rubric = load_rubric()
    use_class_server(rubric, "day3")                      # True where enabled and a Python has vLLM
    found = class_evidence(rubric, "day3", {"alice": "grading/submitted/alice/day3", "bob": ...},
                           cache_dir=Path("grading/records/day3/_cache"), log_dir=Path("/tmp/class-server"))
    found["alice"]["improvement"], found["alice"]["deployment"]   # the same evidence collect_evidence gives

The per-learner path (:func:`llmcourse.grading.rubric.collect_evidence`) re-generates each learner's
held-out answers with a fresh transformers load of base + adapter and starts each learner's own API
server (a vLLM start) for the multi-turn chat: a class of 100 costs 100 loads and 100 starts. Here one
vLLM OpenAI server (``--enable-lora --max-loras K --max-lora-rank R``) is started per base model of the
batch (normally one), the base model served as ``course-base``; each learner's adapter is loaded into it
at runtime under the learner's id (``POST /v1/load_lora_adapter``, which needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING``: a static ``--lora-modules`` list would make the whole server refuse
to start over one broken adapter), then the very same evidence functions run with ``model=<student>``:
the held-out questions (greedy, all sent at once so vLLM batches them) and the multi-turn chat. An adapter
that does not fit the base model (:func:`llmcourse.grading.rubric.adapter_mismatch`, checked on both paths:
vLLM itself loads another model's shapes without a word) or that vLLM refuses to load is that learner's
finding, in the improvement and the deployment checks, and the batch goes on; a rank over vLLM's 512
(no vLLM can hold it) sends that learner down the per-learner path.

Equal scores: greedy tokens from vLLM in bf16 and transformers in fp32 differ, so both paths compute in
the precision rubric.yaml names (``dtype: float32`` in the improvement and deployment settings): the
per-learner path's transformers and vLLM loads and this server alike. Each learner's template variables
(their system prompt, a Qwen3 thinking switch) go with each request (``chat_template_kwargs``), as their
own server would have set them at start; held-out questions carry their own system message and get no
default, as in transformers. tests/test_class_eval.py checks the two paths' scores equal, learner by
learner; ``benchmarks/class_grading.py`` times them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmcourse.artifacts import ADAPTER_CONFIG
from llmcourse.errors import CourseError

SETTINGS = "class_server"      # the block of rubric.yaml's evidence settings
MODEL_KINDS = {"improvement", "deployment"}
BASE_NAME = "course-base"      # the base model's name on the class server (learner ids are \w[\w.-]*)
ENGINE = "vllm-class"          # marks the class path's cached base answers apart from transformers'


class AdapterNotServed(CourseError):
    """The class server could not load a learner's adapter; the message says why and what to check."""


def use_class_server(rubric, assignment: str, choice: str = "auto") -> bool:
    """Whether a batch of ``assignment`` gets its model checks from one shared server.

    ``choice``: ``auto`` = rubric.yaml's ``class_server.enabled`` (default true); ``off`` = never. Either way
    only for an assignment with improvement or deployment dimensions and where a Python has vLLM
    (:func:`llmcourse.env.vllm_lane.vllm_python`); elsewhere the per-learner path is the fallback.
    """
    from llmcourse.env.vllm_lane import vllm_python

    if choice == "off" or assignment not in rubric.assignments:
        return False
    if not rubric.settings(assignment, SETTINGS).get("enabled", True):
        return False
    kinds = {d.evidence for d in rubric.assignments[assignment].dimensions.values()}
    return bool(kinds & MODEL_KINDS) and vllm_python() is not None


def _adapter_rank(adapter: Path) -> int:
    try:
        return int(json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # unreadable: vLLM's load will say what is wrong with it


@dataclass
class Endpoint:
    """What :func:`llmcourse.grading.rubric._api_check` talks to: a learner's adapter on the class server."""

    base_url: str
    api_key: str
    model: str
    extra_body: dict


class ClassServer:
    """One vLLM OpenAI server on ``cfg``'s base model, learners' adapters loaded into it by name.

    ``max_rank``: the largest adapter rank it must hold (rounded up to a size vLLM accepts). Call :meth:`stop`.
    """

    def __init__(self, cfg, max_rank: int, settings: dict, log_path: Path):
        from llmcourse.env.lane import resolve_device
        from llmcourse.env.models import get_model, guard_model_load
        from llmcourse.env.vllm_lane import cpu_settings, lora_rank
        from llmcourse.serving.server import (
            RunningServer,
            free_port,
            vllm_command,
            wait_for_health,
        )

        guard_model_load(f"启动全班共用的 vLLM 服务（{cfg.model.name}）")
        base = cfg.model_copy(deep=True)
        base.serve.served_model_name, base.serve.host, base.serve.port = BASE_NAME, "127.0.0.1", free_port()
        base.serve.max_batch = int(settings.get("max_num_seqs", base.serve.max_batch))
        # No server-wide default system message: each request brings its learner's (see _template_kwargs).
        base.serve.system_prompt, base.data.system_prompt = None, None
        self.max_rank = lora_rank(max(max_rank, 1))
        self.max_loras = int(settings.get("max_loras", 4))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = vllm_command(base, None, template_dir=log_path.parent) + [
            "--enable-lora", "--max-loras", str(self.max_loras), "--max-lora-rank", str(self.max_rank),
            "--max-cpu-loras", str(self.max_loras)]
        self.api_key = f"sk-{secrets.token_hex(16)}"
        env = {**os.environ, **(cpu_settings() if resolve_device(cfg.model.device) == "cpu" else {}),
               "VLLM_API_KEY": self.api_key, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "PYTHONUNBUFFERED": "1"}
        with log_path.open("w", encoding="utf-8") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.cfg, self.stop_strings = cfg, list(get_model(cfg.model.name).stop_strings)
        self.root = f"http://127.0.0.1:{base.serve.port}"
        self.server = RunningServer(f"{self.root}/v1", self.api_key, BASE_NAME, process, log_path)
        self.loaded: dict[str, str | None] = {}   # learner -> None (loaded) or why not
        self.concurrency = int(settings.get("max_num_seqs", 16))
        started = time.monotonic()
        try:
            wait_for_health(f"{self.root}/health", process, float(settings.get("start_timeout_s", 600)))
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"全班共用的 vLLM 服务没有启动：{exc}\n服务日志（最后几行）：\n{self.server.log_tail()}") from None
        self.start_seconds = round(time.monotonic() - started, 1)

    def _post(self, path: str, body: dict):
        import httpx

        return httpx.post(f"{self.root}{path}", json=body, timeout=300,
                          headers={"Authorization": f"Bearer {self.api_key}"})

    def load(self, student: str, adapter: Path) -> str:
        """The model name to ask for ``student``'s adapter; raises :class:`AdapterNotServed` with the reason."""
        if student not in self.loaded:
            rank = _adapter_rank(adapter)
            if rank > self.max_rank:
                self.loaded[student] = (f"适配器的秩 r = {rank} 超过了全班服务的 max_lora_rank {self.max_rank}"
                                        "（vLLM 最多支持 512）；请用更小的 lora.r 重新训练")
            else:
                response = self._post("/v1/load_lora_adapter", {"lora_name": student, "lora_path": str(adapter)})
                self.loaded[student] = None if response.status_code == 200 else (
                    f"vLLM 加载不了适配器 {adapter}（HTTP {response.status_code}）：{_message(response)[:400]}；"
                    f"请检查它是不是在基座模型 {self.cfg.model.name} 上训练的、adapter_model.safetensors 是否完整")
        if self.loaded[student]:
            raise AdapterNotServed(self.loaded[student])
        return student

    def unload(self, student: str) -> None:
        if self.loaded.pop(student, "not loaded") is None:
            self._post("/v1/unload_lora_adapter", {"lora_name": student})

    def generator(self, student: str):
        """``generate(cfg, adapter, examples)`` for :func:`llmcourse.grading.rubric.improvement_evidence`."""
        def generate(cfg, adapter, examples):
            model = BASE_NAME if adapter is None else self.load(student, Path(adapter))
            # Held-out rows bring their system message; none is added, as transformers adds none.
            kwargs = {**_template_kwargs(cfg), "default_system": ""}
            with ThreadPoolExecutor(max(1, min(self.concurrency, len(examples)))) as pool:
                return list(pool.map(lambda e: self._answer(model, e.prompt_messages, cfg, kwargs), examples))
        generate.engine = ENGINE
        return generate

    def _answer(self, model: str, messages: list[dict], cfg, kwargs: dict) -> str:
        from llmcourse.serving.chat import client

        response = client(self.server.base_url, self.api_key).chat.completions.create(
            model=model, messages=messages, max_tokens=cfg.infer.max_tokens, temperature=0.0,
            stop=self.stop_strings, extra_body={"chat_template_kwargs": kwargs})
        return (response.choices[0].message.content or "").strip()

    def serve_for(self, student: str):
        """``serve(cfg)`` for :func:`llmcourse.grading.rubric._api_check`: the learner's endpoint here."""
        @contextmanager
        def serve(cfg):
            from llmcourse.serving.server import resolve_adapter

            adapter = resolve_adapter(cfg)  # the learner's own server would refuse the same way
            model = BASE_NAME if adapter is None else self.load(student, adapter)
            yield Endpoint(self.server.base_url, self.api_key, model, {"chat_template_kwargs": _template_kwargs(cfg)})
        return serve

    def stop(self) -> None:
        self.server.stop()


def _template_kwargs(cfg) -> dict:
    """The template variables the learner's own server would have been started with."""
    from llmcourse.env.vllm_lane import template_kwargs

    return template_kwargs(cfg)


def _message(response) -> str:
    try:
        body = response.json()
        return str(body.get("error", {}).get("message") or body.get("message") or body)
    except ValueError:
        return response.text


def _base_key(cfg) -> tuple:
    from llmcourse.env.loading import resolve_model_path

    return cfg.model.name, str(resolve_model_path(cfg)), cfg.model.dtype, cfg.model.device


class _Unservable:
    """A learner whose config cannot even name a base model here: the evidence functions fail as they would alone."""

    def __init__(self, why: str):
        self.why = why

    def generator(self, student):
        def generate(cfg, adapter, examples):
            raise AdapterNotServed(self.why)
        generate.engine = ENGINE
        return generate

    def serve_for(self, student):
        @contextmanager
        def serve(cfg):
            raise AdapterNotServed(self.why)
            yield
        return serve

    def unload(self, student):
        pass


def class_evidence(rubric, assignment: str, folders: dict[str, str | Path], cache_dir: Path | None = None,
                   log_dir: str | Path | None = None, progress=None) -> dict[str, dict]:
    """``{student: {dimension: evidence}}`` for the improvement and deployment dimensions of every learner.

    Learners are grouped by base model (name, folder, dtype, device); each group gets one :class:`ClassServer`.
    A group whose server does not start gets the per-learner path (:func:`collect_evidence` without
    a server), so a class is never left ungraded. ``progress(student, seconds)`` after each learner.
    """
    import tempfile

    from llmcourse.artifacts import ADAPTER_DIR
    from llmcourse.env.vllm_lane import VLLM_LORA_RANKS
    from llmcourse.grading.rubric import collect_evidence, grading_config, project_paths

    dtype = rubric.settings(assignment, "improvement").get("dtype")
    settings = rubric.settings(assignment, SETTINGS)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="llmcourse-class-"))
    groups: dict[tuple, list[tuple[str, Path, int]]] = {}
    found: dict[str, dict] = {}
    lone: dict[str, str] = {}
    apart: list[tuple[str, Path]] = []
    for student, folder in folders.items():
        folder = Path(folder)
        try:
            cfg = grading_config(folder, dtype)
            key = _base_key(cfg)
        except Exception as exc:  # noqa: BLE001  (their evidence says so below, dimension by dimension)
            lone[student] = f"{type(exc).__name__}: {exc}"
            continue
        rank = _adapter_rank(project_paths(folder)[1] / ADAPTER_DIR)
        if rank > VLLM_LORA_RANKS[-1]:
            apart.append((student, folder))  # no vLLM holds it; transformers may: the per-learner path decides
        else:
            groups.setdefault(key, []).append((student, folder, rank))

    def evaluate(server, student: str, folder: Path) -> None:
        started = time.monotonic()
        try:
            found[student] = collect_evidence(rubric, assignment, folder, cache_dir, kinds=MODEL_KINDS,
                                              generate=server.generator(student) if server else None,
                                              serve=server.serve_for(student) if server else None)
        finally:
            if server:
                server.unload(student)
        if progress:
            progress(student, round(time.monotonic() - started, 2))

    for student, why in lone.items():
        evaluate(_Unservable(why), student, Path(folders[student]))
    for student, folder in apart:
        evaluate(None, student, folder)
    for number, (key, members) in enumerate(groups.items()):
        cfg = grading_config(members[0][1], dtype)
        try:
            server = ClassServer(cfg, max(r for _, _, r in members), settings, log_dir / f"server-{number}-{key[0]}.log")
        except Exception as exc:  # noqa: BLE001  (no shared server: every learner of the group alone, as before)
            print(f"注意：{exc}；这一组 {len(members)} 名学员改为逐个评分", flush=True)
            server = None
        try:
            for student, folder, _ in members:
                if server and not server.server.alive():  # it died under someone: the rest are graded alone
                    print(f"注意：全班共用的 vLLM 服务意外退出，其余学员改为逐个评分；日志 {server.server.log_path}", flush=True)
                    server = None
                evaluate(server, student, folder)
        finally:
            if server:
                server.stop()
    return found


def grade_class(course, assignment: str, students: list[str], rubric=None, progress=None) -> dict[str, dict]:
    """The class pass of ``llmcourse grade autograde``: merge the model dimensions into each evidence.json.

    Runs after the per-learner pool graded notebooks and static evidence; a learner without an
    evidence.json (timed out, crashed) is left as the pool left them.
    """
    from llmcourse.grading.rubric import load_rubric

    rubric = rubric or load_rubric(course.rubric_path)
    files = {s: course.records_dir(assignment, s) / "evidence.json" for s in students}
    folders = {s: course.submitted_dir(s, assignment) for s in students if files[s].is_file()}
    found = class_evidence(rubric, assignment, folders, cache_dir=course.grading / "records" / assignment / "_cache",
                           log_dir=course.grading / "records" / assignment / "_class_server", progress=progress)
    for student, evidence in found.items():
        merged = {**json.loads(files[student].read_text(encoding="utf-8")), **evidence}
        files[student].write_text(json.dumps(merged, ensure_ascii=False, indent=1), encoding="utf-8")
    return found
