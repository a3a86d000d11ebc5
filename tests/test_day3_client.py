"""day3/deploy/client.py: the model name and questions come from --config; wrong config or no server: a clear message."""
import importlib.util
import json

import pytest
from fastapi.testclient import TestClient

from conftest import ROOT
from test_serve import KEY, EchoModel

CLIENT = ROOT / "day3" / "deploy" / "client.py"


@pytest.fixture()
def client_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("day3_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("LLMCOURSE_API_KEY", KEY)
    return module


def serve_in_process(module, monkeypatch, config):
    """Point the script's OpenAI client at our FastAPI app (EchoModel) serving ``config``."""
    import openai
    from llmcourse.config import load_config
    from llmcourse.serving.server import create_app

    app = TestClient(create_app(load_config(config), KEY, EchoModel()), base_url="http://testserver")
    monkeypatch.setattr(module, "OpenAI", lambda **kwargs: openai.OpenAI(**kwargs, http_client=app))
    return app


@pytest.mark.parametrize("scenario", ["intent", "domain_qa"])
def test_the_config_decides_model_name_and_questions(client_module, monkeypatch, tmp_path, scenario):
    config = ROOT / "day3" / "configs" / f"{scenario}.yaml"
    with serve_in_process(client_module, monkeypatch, config):
        code = client_module.main(["--config", str(config), "--base-url", "http://testserver/v1",
                                   "--out", str(tmp_path / "conversation.json")])
    assert code == 0
    saved = json.loads((tmp_path / "conversation.json").read_text(encoding="utf-8"))
    assert saved["model"] == f"day3-{scenario.replace('_', '-')}" and saved["served_by"] == "llmcourse"
    assert [t["question"] for t in saved["turns"]] == client_module.DEFAULT_QUESTIONS[scenario]
    assert saved["turns"][1]["answer"].startswith("共4条")  # system + question, answer, follow-up


def test_a_config_that_is_not_the_servers_says_so(client_module, monkeypatch, tmp_path, capsys):
    with serve_in_process(client_module, monkeypatch, ROOT / "day3" / "configs" / "intent.yaml"):
        code = client_module.main(["--base-url", "http://testserver/v1", "--out", str(tmp_path / "c.json")])
    assert code == 1 and not (tmp_path / "c.json").exists()
    error = capsys.readouterr().err
    assert "服务上没有模型 day3-faq" in error and "day3-intent" in error and "--config" in error


def test_no_server_and_a_broken_config_get_one_line_each(client_module, tmp_path, capsys):
    assert client_module.main(["--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "c.json")]) == 1
    assert "连不上 http://127.0.0.1:9/v1" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("serve: [1\n", encoding="utf-8")
    assert client_module.main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "YAML" in capsys.readouterr().err
