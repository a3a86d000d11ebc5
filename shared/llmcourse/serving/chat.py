"""Multi-turn conversations with an OpenAI-compatible server, through the official ``openai`` client.

Usage::

    from llmcourse.serving.chat import multi_turn, stream_answer
    turns = multi_turn("http://127.0.0.1:8000/v1", "sk-...", "day3-faq",
                       ["退货期是多久？", "那超过这个期限还能换货吗？"])
    for turn in turns:
        print(turn.question, "→", turn.answer, turn.latency_s)

    for piece in stream_answer(base_url, api_key, model, [{"role": "user", "content": "你好"}]):
        print(piece, end="")

Each turn sends the whole history (earlier questions *and* the model's earlier answers), which
is how chat APIs keep context: the server itself remembers nothing between requests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from llmcourse.config import CourseConfig
from llmcourse.errors import ServiceUnreachable


@dataclass
class Turn:
    question: str
    answer: str
    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    messages_sent: int  # how many messages the request carried: grows with the history

    def to_dict(self) -> dict:
        return asdict(self)


def client(base_url: str, api_key: str, timeout: float = 300):
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def multi_turn(base_url: str, api_key: str, model: str, questions: list[str], system: str | None = None,
               max_tokens: int = 96, temperature: float = 0.0, extra_body: dict | None = None) -> list[Turn]:
    """Ask ``questions`` one after another in one conversation; every request carries the history.

    ``extra_body``: fields beyond OpenAI's, sent as they are (the grader's class server takes each learner's
    ``chat_template_kwargs`` this way: llmcourse.grading.class_eval)."""
    api = client(base_url, api_key)
    history = [{"role": "system", "content": system}] if system else []
    turns = []
    for question in questions:
        history.append({"role": "user", "content": question})
        started = time.perf_counter()
        response = api.chat.completions.create(model=model, messages=history, max_tokens=max_tokens,
                                               temperature=temperature, extra_body=extra_body)
        answer = response.choices[0].message.content or ""
        usage = response.usage
        turns.append(Turn(question, answer, round(time.perf_counter() - started, 3),
                          usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
                          len(history)))
        history.append({"role": "assistant", "content": answer})
    return turns


def stream_answer(base_url: str, api_key: str, model: str, messages: list[dict],
                  max_tokens: int = 96) -> Iterator[str]:
    """Yield the answer's text pieces as the server streams them."""
    stream = client(base_url, api_key).chat.completions.create(model=model, messages=messages,
                                                               max_tokens=max_tokens, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def default_base_url(cfg: CourseConfig) -> str:
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::") else cfg.serve.host
    return f"http://{host}:{cfg.serve.port}/v1"


def print_conversation(cfg: CourseConfig, questions: list[str], base_url: str | None = None,
                       api_key: str | None = None) -> list[Turn]:
    """``llmcourse chat``: run :func:`multi_turn` against a running server and print each turn."""
    from llmcourse.serving.server import API_KEY_ENV

    key = api_key or cfg.serve.api_key or os.environ.get(API_KEY_ENV)
    if not key:
        from llmcourse.config import ConfigError
        raise ConfigError(f"需要 API 密钥：请设置环境变量 {API_KEY_ENV} 或配置 serve.api_key")
    import openai

    url = base_url or default_base_url(cfg)
    try:
        turns = multi_turn(url, key, cfg.serve.served_model_name, questions)
    except openai.APIConnectionError:
        raise ServiceUnreachable(f"连不上服务 {url}：先在另一个终端运行 llmcourse serve，或用 --base-url 指定地址") from None
    except openai.APIStatusError as exc:
        raise ServiceUnreachable(f"服务返回 {exc.status_code}：{exc.message}") from None
    for number, turn in enumerate(turns, 1):
        print(f"[第 {number} 轮] 用户：{turn.question}\n         模型：{turn.answer}  "
              f"（{turn.latency_s:.1f} 秒，本次请求带了 {turn.messages_sent} 条消息）")
    return turns
