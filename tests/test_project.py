"""Day 3 project glue: split cases, split evaluation, the report, and the intent scenario end to end."""
import json
import shutil

import pytest

from conftest import ROOT, run_cli
from llmcourse.course import SKIP
from llmcourse.project import RESULTS_END, RESULTS_START, cases_from_split, fill_results


@pytest.fixture()
def project_copy(tmp_path):
    target = tmp_path / "day3"
    shutil.copytree(ROOT / "day3", target, ignore=SKIP)
    return target


def test_intent_rows_become_cases_scored_by_label(project_copy):
    assert run_cli("data", "build", str(project_copy / "configs" / "intent.yaml")).returncode == 0
    cases = cases_from_split(project_copy / "data" / "built" / "intent" / "test.jsonl", limit=5)
    assert len(cases) == 5
    for case in cases:
        assert case["label"] and case["messages"][-1]["role"] == "user"
        assert case["reference"] == case["label"]
        assert case["messages"][0]["role"] == "system" and "{labels}" not in case["messages"][0]["content"]


def test_fill_results_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# 项目\n\n前言\n{RESULTS_START}\n旧结果\n{RESULTS_END}\n\n附录\n", encoding="utf-8")
    fill_results(readme, "## 新结果\n| a |")
    text = readme.read_text(encoding="utf-8")
    assert "旧结果" not in text and "## 新结果" in text
    assert text.startswith("# 项目\n\n前言\n") and text.endswith("\n\n附录\n")
    readme.write_text("no markers", encoding="utf-8")
    with pytest.raises(ValueError, match="results:start"):
        fill_results(readme, "x")
    assert readme.read_text(encoding="utf-8") == "no markers"


@pytest.mark.slow
def test_intent_scenario_trains_evaluates_and_serves(project_copy):
    from llmcourse.chat import multi_turn
    from llmcourse.config import load_config
    from llmcourse.project import evaluate_split
    from llmcourse.serve import running_server

    config = project_copy / "configs" / "intent.yaml"
    assert run_cli("data", "build", str(config)).returncode == 0
    done = run_cli("train", str(config), "train.max_steps=4", "data.max_samples=16")
    assert done.returncode == 0, done.stderr[-2000:]
    cfg = load_config(config)
    adapter = project_copy / "train" / "run_intent" / "adapter"
    result = evaluate_split(cfg, adapter, cfg.data.test_file, project_copy / "eval_test.json", limit=3)
    assert result["questions"] == 3 and all(0.0 <= row["auto_score"] <= 1.0 for row in result["rows"])
    assert json.loads((project_copy / "eval_test.json").read_text())["rows"][0]["question"]
    with running_server(cfg) as server:
        turns = multi_turn(server.base_url, server.api_key, server.model, ["我的订单到哪了？"], max_tokens=8)
    assert turns[0].answer.strip() and turns[0].completion_tokens <= 8
