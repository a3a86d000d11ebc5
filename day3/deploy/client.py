"""A multi-turn conversation with the project's API through the official ``openai`` client.

Usage (with the server running: ``llmcourse serve config.yaml``)::

    export LLMCOURSE_API_KEY=sk-...          # the same key the server was started with
    python deploy/client.py                  # the default two-turn conversation
    python deploy/client.py --base-url http://127.0.0.1:8000/v1 "第一个问题" "追问"

The API remembers nothing between requests: every request carries the whole conversation so
far (earlier questions and the model's earlier answers). That is what lets the follow-up
question ("那……呢？") be understood. The conversation is saved to deploy/conversation.json.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from openai import OpenAI

from llmcourse.config import load_config
from llmcourse.project import save_conversation

HERE = Path(__file__).resolve().parent
# The follow-up only makes sense after the first answer: "那生鲜商品呢？" asks the same thing about fresh food.
DEFAULT_QUESTIONS = ["日用品不想要了，多少天内可以退？", "那生鲜商品呢？"]


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
    parser.add_argument("questions", nargs="*", default=DEFAULT_QUESTIONS)
    parser.add_argument("--config", default=str(HERE.parent / "config.yaml"))
    parser.add_argument("--base-url", default=None, help="default: http://<serve.host>:<serve.port>/v1")
    parser.add_argument("--system", default=None, help="optional system message")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--out", default=str(HERE / "conversation.json"))
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    base_url = args.base_url or f"http://{cfg.serve.host}:{cfg.serve.port}/v1"
    api_key = os.environ.get("LLMCOURSE_API_KEY") or cfg.serve.api_key
    if not api_key:
        print("错误：请先设置环境变量 LLMCOURSE_API_KEY（与启动服务时相同）", file=sys.stderr)
        return 2
    client = OpenAI(base_url=base_url, api_key=api_key, timeout=300, max_retries=0)
    turns = converse(client, cfg.serve.served_model_name, args.questions, args.system, args.max_tokens)
    print("已保存：", save_conversation(turns, args.out, base_url, cfg.serve.served_model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
