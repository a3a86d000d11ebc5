"""Real client libraries against an OpenAI-compatible chat API: does our server speak the protocol they speak?

Usage::

    .venv-clients/bin/python tests/clients/suite.py --base-url http://127.0.0.1:8000/v1 --api-key KEY \
        --model course-lora [--json OUT] [--only openai,langchain,llamaindex]

Works against any such server: ``llmcourse serve`` (our FastAPI app on a CPU), vLLM's
``python -m vllm.entrypoints.openai.api_server ... --api-key KEY``, or another one. Prints one line
per case, ``PASS name`` or ``FAIL name: reason``, and exits 1 if any case failed (2: bad arguments).

The clients: the official ``openai`` SDK (the course's pin), LangChain's ``ChatOpenAI``
(langchain-openai) and LlamaIndex's ``OpenAILike`` (llama-index-llms-openai-like). LlamaIndex
requires openai < 3, so ``make setup`` installs it with its own openai into
``.venv-clients/llamaindex``; when that folder exists beside this interpreter (or ``--llamaindex-path``
names one), the LlamaIndex cases run in a child process with it first on ``sys.path``.
Calls ask for at most 16 tokens, so the suite takes well under a minute on a CPU server.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

QUESTION = "怎么申请退款？"
FOLLOW_UPS = ["退款多久到账？", "可以退到别的卡吗？"]
MAX_TOKENS = 16
TIMEOUT_S = 120.0


class CaseFailure(Exception):
    """A case's check did not hold; the message says what was expected and what came back."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CaseFailure(message)


@dataclass
class Result:
    name: str
    group: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0


def describe(exc: BaseException) -> str:
    """One line for a failure: the HTTP status and the server's message for API errors."""
    status = getattr(exc, "status_code", None)
    if status is not None:
        body = getattr(exc, "body", None)
        message = body.get("message", body) if isinstance(body, dict) else (body or str(exc))
        if isinstance(message, dict):
            message = json.dumps(message, ensure_ascii=False)
        text = f"HTTP {status} ({type(exc).__name__}): {message}"
    elif isinstance(exc, (CaseFailure, AssertionError)):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "..."


def preview(text: str | None, size: int = 40) -> str:
    return json.dumps((text or "")[:size], ensure_ascii=False)


# ---------------------------------------------------------------- the official openai SDK

class OpenAICases:
    group = "openai"

    def __init__(self, base_url: str, api_key: str, model: str):
        import openai

        self.openai, self.base_url, self.api_key, self.model = openai, base_url, api_key, model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=TIMEOUT_S)
        self._baseline = None

    def create(self, messages=None, **params):
        params.setdefault("max_tokens", MAX_TOKENS)
        params.setdefault("temperature", 0.0)
        return self.client.chat.completions.create(
            model=self.model, messages=messages or [{"role": "user", "content": QUESTION}], **params)

    def baseline(self):
        """The greedy answer to QUESTION (max 16 tokens), asked once and shared by the cases that compare."""
        if self._baseline is None:
            self._baseline = self.create()
        return self._baseline

    cases = ("wrong_key_401", "models_list", "chat", "stream_include_usage", "stop", "sampling_params_seed",
             "content_text_parts", "developer_role", "max_completion_tokens", "response_format_text", "multi_turn")

    def wrong_key_401(self):
        wrong = self.openai.OpenAI(base_url=self.base_url, api_key=self.api_key + "-wrong", max_retries=0,
                                   timeout=TIMEOUT_S)
        try:
            wrong.chat.completions.create(model=self.model, messages=[{"role": "user", "content": QUESTION}],
                                          max_tokens=1)
        except self.openai.AuthenticationError as exc:
            check(exc.status_code == 401, f"AuthenticationError with status {exc.status_code}, expected 401")
            return
        except self.openai.APIStatusError as exc:
            raise CaseFailure(f"a wrong key got HTTP {exc.status_code} ({type(exc).__name__}), expected 401") from None
        raise CaseFailure("a wrong key was accepted (expected 401 AuthenticationError)")

    def models_list(self):
        ids = [m.id for m in self.client.models.list()]
        check(self.model in ids, f"GET /v1/models lists {ids}, not {self.model!r}")

    def chat(self):
        r = self.baseline()
        check(r.object == "chat.completion", f"object is {r.object!r}, expected 'chat.completion'")
        check(bool(r.id), "the response has no id")
        check(len(r.choices) == 1, f"{len(r.choices)} choices, expected 1")
        choice = r.choices[0]
        check(choice.message.role == "assistant", f"message role {choice.message.role!r}")
        check(isinstance(choice.message.content, str) and choice.message.content.strip() != "",
              f"empty answer {choice.message.content!r}")
        check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
        u = r.usage
        check(u is not None, "no usage in a non-streaming response")
        check(u.prompt_tokens > 0 and 1 <= u.completion_tokens <= MAX_TOKENS,
              f"usage {u.prompt_tokens} prompt / {u.completion_tokens} completion tokens (max_tokens={MAX_TOKENS})")
        check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"total_tokens {u.total_tokens} != sum")

    def stream_include_usage(self):
        chunks = list(self.create(stream=True, stream_options={"include_usage": True}))
        check(len(chunks) >= 2, f"{len(chunks)} chunks")
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        text = "".join(pieces)
        check(text.strip() != "", f"the content chunks concatenate to an empty answer ({len(pieces)} chunks)")
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        check(len(finishes) == 1 and finishes[0] in ("stop", "length"), f"finish_reason chunks: {finishes}")
        last = chunks[-1]
        check(last.usage is not None, "the last chunk carries no usage (stream_options.include_usage=true)")
        check(last.choices == [], f"the usage chunk has {len(last.choices)} choices, expected []")
        check(all(c.usage is None for c in chunks[:-1]), "usage arrived before the last chunk")
        check(1 <= last.usage.completion_tokens <= MAX_TOKENS and last.usage.prompt_tokens > 0,
              f"usage {last.usage}")

    def stop(self):
        first = self.baseline().choices[0].message.content or ""
        # A character the model does produce, not at the very start: stopping on it must cut the answer there.
        stop = next((ch for i, ch in enumerate(first) if i >= 1 and not ch.isspace() and first.index(ch) >= 1), None)
        check(stop is not None, f"the unconstrained answer {preview(first)} is too short to pick a stop string")
        r = self.create(stop=[stop])
        text = r.choices[0].message.content or ""
        check(stop not in text, f"stop={stop!r}, yet the answer contains it: {preview(text)}")
        check(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason!r}, expected 'stop'")
        check(len(text) < len(first), f"stop={stop!r} did not shorten the answer {preview(first)}: {preview(text)}")

    def sampling_params_seed(self):
        params = {"temperature": 0.9, "top_p": 0.9, "presence_penalty": 0.3, "frequency_penalty": 0.3, "seed": 1234,
                  "max_tokens": 12}
        texts = [self.create(**params).choices[0].message.content for _ in range(2)]
        check(bool(texts[0]), "empty answer")
        check(texts[0] == texts[1], f"same seed and temperature 0.9, different answers: {preview(texts[0])} vs "
                                    f"{preview(texts[1])}")

    def content_text_parts(self):
        r = self.create(messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], max_tokens=4)
        check(bool(r.choices[0].message.content), "empty answer")
        plain = self.baseline().usage.prompt_tokens
        check(r.usage.prompt_tokens == plain, f"content as one text part: {r.usage.prompt_tokens} prompt tokens, "
                                             f"as a string: {plain}")

    def developer_role(self):
        """Accepted, and it reaches the prompt: a longer developer message means more prompt tokens."""
        tokens = []
        for instruction in ("回答要简短。", "你是在线商城的客服助手。回答要简短、礼貌，只根据商城的售后政策回答，不要编造。"):
            messages = [{"role": "developer", "content": instruction}, {"role": "user", "content": QUESTION}]
            r = self.create(messages=messages, max_tokens=2)
            check(bool(r.choices[0].message.content), "empty answer")
            tokens.append(r.usage.prompt_tokens)
        check(tokens[1] > tokens[0], f"prompt tokens with a short / long developer message: {tokens}: "
                                     f"the developer message does not reach the model")

    def max_completion_tokens(self):
        limit = 5
        r = self.create(max_tokens=None, max_completion_tokens=limit)  # max_tokens=None: not sent
        check(r.usage is not None and 1 <= r.usage.completion_tokens <= limit,
              f"max_completion_tokens={limit}, usage.completion_tokens={r.usage and r.usage.completion_tokens}")

    def response_format_text(self):
        r = self.create(response_format={"type": "text"}, max_tokens=4)
        check(bool(r.choices[0].message.content), "empty answer")

    def multi_turn(self):
        messages, prompt_tokens = [], []
        for question in [QUESTION, *FOLLOW_UPS]:
            messages.append({"role": "user", "content": question})
            r = self.create(messages=list(messages), max_tokens=8)
            answer = r.choices[0].message.content
            check(bool(answer), f"turn {len(prompt_tokens) + 1}: empty answer")
            prompt_tokens.append(r.usage.prompt_tokens)
            messages.append({"role": "assistant", "content": answer})
        check(all(a < b for a, b in itertools.pairwise(prompt_tokens)),
              f"prompt tokens per turn {prompt_tokens}: the history is not carried")


# ---------------------------------------------------------------- LangChain

class LangChainCases:
    group = "langchain"

    def __init__(self, base_url: str, api_key: str, model: str):
        from langchain_openai import ChatOpenAI

        self.llm = ChatOpenAI(base_url=base_url, api_key=api_key, model=model, max_tokens=MAX_TOKENS,
                              temperature=0.0, max_retries=0, timeout=TIMEOUT_S)

    cases = ("multi_turn_invoke", "stream")

    def multi_turn_invoke(self):
        from langchain_core.messages import AIMessage, HumanMessage

        history, inputs = [], []
        for question in [QUESTION, FOLLOW_UPS[0]]:
            history.append(HumanMessage(question))
            reply = self.llm.invoke(history)
            check(isinstance(reply, AIMessage), f"invoke returned {type(reply).__name__}")
            check(isinstance(reply.content, str) and reply.content.strip() != "", f"empty answer {reply.content!r}")
            check(reply.usage_metadata is not None, "no usage_metadata on the reply")
            inputs.append(reply.usage_metadata["input_tokens"])
            history.append(reply)
        check(inputs[1] > inputs[0], f"input tokens per turn {inputs}: the history is not carried")

    def stream(self):
        chunks = list(self.llm.stream([("human", QUESTION)], stream_usage=True))
        text = "".join(c.content for c in chunks if isinstance(c.content, str))
        check(text.strip() != "", f"{len(chunks)} chunks, empty answer")
        usage = [c.usage_metadata for c in chunks if c.usage_metadata]
        check(usage and usage[-1]["output_tokens"] >= 1, f"no usage in the stream (stream_usage=True): {usage}")


# ---------------------------------------------------------------- LlamaIndex

class LlamaIndexCases:
    group = "llamaindex"

    def __init__(self, base_url: str, api_key: str, model: str):
        from llama_index.llms.openai_like import OpenAILike

        self.llm = OpenAILike(model=model, api_base=base_url, api_key=api_key, is_chat_model=True,
                              context_window=2048, max_tokens=MAX_TOKENS, temperature=0.0, max_retries=0,
                              timeout=TIMEOUT_S)

    cases = ("chat", "stream_chat")

    def chat(self):
        from llama_index.core.llms import ChatMessage

        history = [ChatMessage(role="user", content=QUESTION)]
        first = self.llm.chat(history)
        check(bool(first.message.content), "empty answer")
        check(str(first.message.role.value) == "assistant", f"role {first.message.role}")
        history += [first.message, ChatMessage(role="user", content=FOLLOW_UPS[0])]
        second = self.llm.chat(history)
        check(bool(second.message.content), "turn 2: empty answer")
        tokens = [r.raw.usage.prompt_tokens for r in (first, second)]
        check(tokens[1] > tokens[0], f"prompt tokens per turn {tokens}: the history is not carried")

    def stream_chat(self):
        from llama_index.core.llms import ChatMessage

        deltas = [r.delta or "" for r in self.llm.stream_chat([ChatMessage(role="user", content=QUESTION)])]
        check("".join(deltas).strip() != "", f"{len(deltas)} chunks, empty answer")


GROUPS = {"openai": (OpenAICases, "openai"), "langchain": (LangChainCases, "langchain-openai"),
          "llamaindex": (LlamaIndexCases, "llama-index-llms-openai-like")}


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_group(group: str, base_url: str, api_key: str, model: str, report: Callable[[Result], None]) -> dict:
    """Run one client library's cases here; returns the versions it ran with."""
    cls, package = GROUPS[group]
    try:
        runner = cls(base_url, api_key, model)
    except Exception as exc:  # noqa: BLE001  library missing or broken: each of its cases fails, none is skipped
        for case in cls.cases:
            report(Result(f"{group}.{case}", group, False, f"{package} could not be set up: {describe(exc)}"))
        return {package: version(package)}
    for case in cls.cases:
        name, start = f"{group}.{case}", time.monotonic()
        try:
            getattr(runner, case)()
            result = Result(name, group, True)
        except Exception as exc:  # noqa: BLE001  any error is the case's failure
            if os.environ.get("SUITE_TRACEBACK"):
                traceback.print_exc()
            result = Result(name, group, False, describe(exc))
        result.seconds = round(time.monotonic() - start, 2)
        report(result)
    return {package: version(package)} if package == "openai" else \
        {package: version(package), f"openai (under {package})": version("openai")}


def run_child(group: str, args: argparse.Namespace, path: Path, report: Callable[[Result], None]) -> dict:
    """Run one group in a child interpreter with ``path`` first on sys.path (its own openai version)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "child.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])}
        command = [sys.executable, str(Path(__file__).resolve()), "--base-url", args.base_url, "--api-key",
                   args.api_key, "--model", args.model, "--only", group, "--json", str(out), "--child"]
        done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=900)
        if not out.exists():
            why = f"the child process failed (exit {done.returncode}): {' '.join(done.stderr.split()[-60:])}"
            for case in GROUPS[group][0].cases:
                report(Result(f"{group}.{case}", group, False, why))
            return {}
        child = json.loads(out.read_text(encoding="utf-8"))
    for case in child["cases"]:
        report(Result(**case))
    return child["clients"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the API's base URL, ending in /v1")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True, help="the served model name")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated groups (default: {','.join(GROUPS)})")
    parser.add_argument("--llamaindex-path", type=Path, default=Path(sys.prefix) / "llamaindex",
                        help="a folder with LlamaIndex and its own openai (default: <this venv>/llamaindex, if any)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # run here, print nothing
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; choose from {list(GROUPS)}")

    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        if not args.child:
            print(f"PASS {result.name}" if result.ok else f"FAIL {result.name}: {result.reason}", flush=True)

    start, clients = time.monotonic(), {}
    for group in groups:
        if group == "llamaindex" and args.llamaindex_path.is_dir() and not args.child:
            clients.update(run_child(group, args, args.llamaindex_path, report))
        else:
            clients.update(run_group(group, args.base_url, args.api_key, args.model, report))
    failed = [r for r in results if not r.ok]
    summary = {"base_url": args.base_url, "model": args.model, "clients": clients,
               "passed": len(results) - len(failed), "failed": len(failed),
               "seconds": round(time.monotonic() - start, 1), "cases": [asdict(r) for r in results]}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    if not args.child:
        print(f"{summary['passed']} passed, {summary['failed']} failed in {summary['seconds']} s "
              f"({', '.join(f'{k} {v}' for k, v in clients.items())})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
