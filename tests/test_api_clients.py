"""Real client libraries (openai, LangChain, LlamaIndex) against the course's OpenAI-compatible API.

The suite itself is tests/clients/suite.py, run with .venv-clients (``make setup`` builds it: the
clients' pins clash with the course venv's). Here the server is our FastAPI app (``api_server``);
tests/test_vllm.py runs the same suite against vLLM's server. A server is anything with ``.base_url`` (…/v1), ``.api_key`` and ``.model``, and optionally ``.known_failures``,
the suite cases that server is known to fail (the test fails if that set changes either way).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CPU_CONFIG, ROOT

CLIENTS_VENV = ROOT / ".venv-clients"
CLIENTS_PYTHON = CLIENTS_VENV / "bin" / "python"
SUITE = ROOT / "tests" / "clients" / "suite.py"

# Our FastAPI server (llmcourse serve with serve.engine: transformers) refuses fields it does not honour
# (extra="forbid"), takes string content only, roles system/user/assistant only. vLLM passes every case.
FASTAPI_KNOWN_FAILURES = frozenset({
    "openai.stop",                  # `stop` is not a field of our ChatRequest
    "openai.sampling_params_seed",  # presence_penalty / frequency_penalty are not either
    "openai.content_text_parts",    # content must be a string, not a list of parts
    "openai.developer_role",        # role must be system / user / assistant
    "openai.response_format_text",  # `response_format` is refused
})


def run_suite(base_url: str, api_key: str, model: str, python: str | Path = CLIENTS_PYTHON,
              timeout: float = 600) -> dict:
    """Run tests/clients/suite.py with ``python`` against a server; its JSON summary plus ``returncode``/``output``."""
    if not Path(python).exists():
        pytest.fail(f"{python} is missing: run `make setup`, which builds the client venv (.venv-clients)")
    with tempfile.TemporaryDirectory(prefix="api-clients-") as scratch:
        out = Path(scratch) / "suite.json"
        done = subprocess.run([str(python), str(SUITE), "--base-url", base_url, "--api-key", api_key,
                               "--model", model, "--json", str(out)],
                              check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if not out.exists():
            raise RuntimeError(f"the suite wrote no results (exit {done.returncode}):\n{done.stdout}\n"
                               f"{done.stderr[-3000:]}")
        summary = json.loads(out.read_text(encoding="utf-8"))
    summary.update(returncode=done.returncode, output=done.stdout)
    return summary


@dataclass
class ApiServer:
    base_url: str
    api_key: str
    model: str
    known_failures: frozenset[str] = field(default_factory=frozenset)


@pytest.fixture(scope="module")
def api_server():
    """``llmcourse serve`` with ``serve.engine: transformers`` (our FastAPI app, the fallback where no Python
    has vLLM) on the stand-in base model. vLLM's server runs the same suite in tests/test_vllm.py."""
    from llmcourse.config import load_config
    from llmcourse.serving.server import start_server

    cfg = load_config(CPU_CONFIG, **{"serve.use_adapter": False, "serve.engine": "transformers"})
    server = start_server(cfg)
    try:
        yield ApiServer(server.base_url, server.api_key, server.model, FASTAPI_KNOWN_FAILURES)
    finally:
        server.stop()


def test_client_venv_has_the_pinned_clients_and_no_torch():
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: run `make setup`, which builds the client venv (.venv-clients)")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    probe = ("import importlib.metadata as m, importlib.util as u, json, sys; "
             "print(json.dumps([u.find_spec('torch') is not None, [m.version(n) for n in sys.argv[1:]]]))")
    for path, pins in ((None, [d for d in project["dependencies"] if d.startswith("openai==")] + extras["clients"]),
                       (CLIENTS_VENV / "llamaindex", extras["clients-llamaindex"])):
        names = [pin.partition("==")[0] for pin in pins]
        done = subprocess.run([str(CLIENTS_PYTHON), "-c", probe, *names], capture_output=True, text=True,
                              check=False, env={"PYTHONPATH": str(path)} if path else {})
        assert done.returncode == 0, done.stderr[-2000:]
        torch, versions = json.loads(done.stdout)
        assert not torch, f"torch is importable in the client venv ({path or CLIENTS_VENV})"
        assert [f"{n}=={v}" for n, v in zip(names, versions)] == pins, (path or CLIENTS_VENV)


@pytest.mark.slow
def test_real_clients_against_the_api(api_server):
    summary = run_suite(api_server.base_url, api_server.api_key, api_server.model)
    failed = {c["name"]: c["reason"] for c in summary["cases"] if not c["ok"]}
    known = set(getattr(api_server, "known_failures", ()))
    assert len(summary["cases"]) >= 15, summary["output"]
    assert "openai.wrong_key_401" not in failed, failed["openai.wrong_key_401"]
    assert set(failed) - known == set(), {name: failed[name] for name in set(failed) - known}
    assert known - set(failed) == set(), f"now passing, drop them from known_failures: {sorted(known - set(failed))}"
    assert summary["returncode"] == (1 if failed else 0), summary["output"]
