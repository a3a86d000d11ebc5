"""A multi-turn conversation with the project's API through the official ``openai`` client.

Usage (with the server running: ``llmcourse serve config.yaml``)::

    export LLMCOURSE_API_KEY=sk-...          # the same key the server was started with
    python deploy/client.py                  # the default two-turn conversation (config.yaml)
    python deploy/client.py --config configs/intent.yaml          # another scenario: its model name
    python deploy/client.py --base-url http://127.0.0.1:8000/v1 "第一个问题" "追问"

``--config`` must be the config the server was started with: the model name asked for is its
``serve.served_model_name`` (and the default questions are its scenario's). The API remembers
nothing between requests: every request carries the whole conversation so far (earlier questions
and the model's earlier answers). That is what lets the follow-up question ("那……呢？") be
understood. The conversation is saved to deploy/conversation.json.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from llmcourse.config import ConfigError, load_config
from llmcourse.evaluation.project import DEFAULT_QUESTIONS, save_conversation
from openai import APIConnectionError, APIStatusError, OpenAI

HERE = Path(__file__).resolve().parent
# DEFAULT_QUESTIONS (per data.scenario) are the ones 03_deploy asks too; your own project: pass yours on the command line.


def converse(client: OpenAI, model: str, questions: list[str], system: str | None, max_tokens: int) -> list[dict]:
    history = [{"role": "system", "content": system}] if system else []
    turns = []
    for question in questions:
        history.append({"role": "user", "content": question})
        started = time.perf_counter()
        response = client.chat.completions.create(model=model, messages=history, max_tokens=max_tokens, temperature=0)
        answer = response.choices[0].message.content or ""
        turns.append({"question": question, "answer": answer, "latency_s": round(time.perf_counter() - started, 3),
                      "prompt_tokens": response.usage.prompt_tokens, "completion_tokens": response.usage.completion_tokens,
                      "messages_sent": len(history)})
        history.append({"role": "assistant", "content": answer})  # carried into the next request
        print(f"用户：{question}\n模型：{answer}\n")
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="multi-turn chat with the project's OpenAI-compatible API")
    parser.add_argument("questions", nargs="*", help="default: two questions for the config's data.scenario")
    parser.add_argument("--config", default=str(HERE.parent / "config.yaml"),
                        help="the config the server was started with (default: config.yaml)")
    parser.add_argument("--base-url", default=None, help="default: http://<serve.host>:<serve.port>/v1")
    parser.add_argument("--system", default=None, help="optional system message")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--out", default=str(HERE / "conversation.json"))
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    base_url = args.base_url or f"http://{cfg.serve.host}:{cfg.serve.port}/v1"
    api_key = os.environ.get("LLMCOURSE_API_KEY") or cfg.serve.api_key
    if not api_key:
        print("错误：请先设置环境变量 LLMCOURSE_API_KEY（与启动服务时相同）", file=sys.stderr)
        return 2
    model = cfg.serve.served_model_name
    questions = args.questions or DEFAULT_QUESTIONS.get(cfg.data.scenario, DEFAULT_QUESTIONS["faq"])
    client = OpenAI(base_url=base_url, api_key=api_key, timeout=300, max_retries=0)
    try:
        served = {m.id: m.owned_by for m in client.models.list().data}
        if model not in served:
            print(f"错误：服务上没有模型 {model}（配置 {args.config} 的 serve.served_model_name），"
                  f"服务提供的是 {', '.join(served) or '（无）'}：--config 要写启动服务时用的那个配置", file=sys.stderr)
            return 1
        turns = converse(client, model, questions, args.system, args.max_tokens)
    except APIConnectionError:
        print(f"错误：连不上 {base_url}：先启动服务（llmcourse serve {args.config}），或用 --base-url 指定地址",
              file=sys.stderr)
        return 1
    except APIStatusError as exc:
        hint = "：密钥和启动服务时的不一样？" if exc.status_code == 401 else ""
        print(f"错误：服务返回 {exc.status_code}{hint} {exc.message}", file=sys.stderr)
        return 1
    print("已保存：", save_conversation(turns, args.out, base_url, model, served_by=served[model]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
