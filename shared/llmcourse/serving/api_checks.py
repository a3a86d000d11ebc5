"""Replay a corpus of malformed HTTP requests against an API and check every answer is a 4xx JSON error.

Usage::

    from llmcourse.serving.api_checks import load_corpus, replay
    results = replay("http://127.0.0.1:8000", load_corpus(), api_key="sk-...")
    bad = [r for r in results if not r["ok"]]     # wrong status, a 5xx, or a non-JSON body

The corpus (``tests/data/malformed_requests.jsonl``) holds one request per line: ``name``,
``method``, ``path``, ``headers`` (the key written as ``sk-test``), ``body`` (text) or
``body_hex`` (raw bytes) or ``body_repeat`` (a very large body), and the ``expect``ed status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from llmcourse.artifacts import COURSE_ROOT

CORPUS = COURSE_ROOT / "tests" / "data" / "malformed_requests.jsonl"
PLACEHOLDER_KEY = "sk-test"


def load_corpus(path: str | Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def request_body(case: dict[str, Any]) -> bytes | None:
    if case.get("body_hex"):
        return bytes.fromhex(case["body_hex"])
    if case.get("body_repeat"):
        repeat = case["body_repeat"]
        return ('{"model": "course-lora", "messages": [{"role": "user", "content": "'
                + repeat["text"] * repeat["times"] + '"}]}').encode()
    return None if case.get("body") is None else case["body"].encode("utf-8")


def replay(root_url: str, corpus: list[dict[str, Any]], api_key: str, model: str = "course-lora",
           client=None) -> list[dict[str, Any]]:
    """Send each request; ``ok`` means the expected status arrived with an OpenAI-style JSON error."""
    import httpx

    http = client or httpx.Client(base_url=root_url, timeout=120)
    results = []
    for case in corpus:
        headers = {k: v.replace(PLACEHOLDER_KEY, api_key) for k, v in case["headers"].items()}
        body = request_body(case)
        if body is not None and model != "course-lora":
            body = body.replace(b'"course-lora"', json.dumps(model).encode())
        response = http.request(case["method"], case["path"], headers=headers, content=body)
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = None
        shaped = isinstance(error, dict) and bool(error.get("message"))
        results.append({"name": case["name"], "status": response.status_code, "expect": case["expect"],
                        "ok": response.status_code == case["expect"] and shaped,
                        "message": error.get("message") if shaped else response.text[:200]})
    return results
