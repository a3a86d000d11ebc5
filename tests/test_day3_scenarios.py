"""Day 3's other scenarios end to end: intent classification and domain QA, the same four notebooks as the FAQ.

They run with ``config_path`` pointing at ``configs/*.yaml``, on CI's smallest sizes and the FastAPI server
(it starts in seconds, vLLM in ~60 s). They do not need the executed course, so they run beside it.
"""
import json
import re
import time

import pytest
from conftest import DAY3_NOTEBOOKS, ROOT, readme_section

pytestmark = pytest.mark.slow
# Per scenario: the config, and the fewest steps after which the stand-in answers every turn with text
# (intent at 8 steps still ends some answers before their first token).
SCENARIOS = {"intent": {"config": "configs/intent.yaml", "max_steps": 12, "max_samples": 48, "max_tokens": 8},
             "domain_qa": {"config": "configs/domain_qa.yaml", "max_steps": 8, "max_samples": 32, "max_tokens": 16}}
EVAL_LIMIT, MAX_CASES, LOAD_REQUESTS = 3, 5, 4


def _squeeze(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", text).lower()


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request, tmp_path_factory):
    """One scenario's four notebooks, papermill, CI sizes; (name, project folder, its config, seconds)."""
    from llmcourse.config import load_config
    from llmcourse.notebooks.run import run_day

    name, sizes = request.param, SCENARIOS[request.param]
    config = sizes["config"]
    parameters = {
        "01_data.ipynb": {"config_path": config},
        "02_train.ipynb": {"config_path": config, "max_steps": sizes["max_steps"], "max_samples": sizes["max_samples"],
                           "eval_limit": EVAL_LIMIT},
        "03_deploy.ipynb": {"config_path": config, "max_tokens": sizes["max_tokens"], "load_requests": LOAD_REQUESTS,
                            "serve_engine": "transformers"},
        "04_verify.ipynb": {"config_path": config, "max_cases": MAX_CASES, "max_tokens": sizes["max_tokens"]}}
    out = tmp_path_factory.mktemp(name)
    started = time.perf_counter()
    seconds = run_day("day3", out, parameters)
    print(f"\nDay 3 scenario {name}: {time.perf_counter() - started:.1f} s {seconds}")
    project = out / "day3"
    return name, project, load_config(project / config), seconds


def test_scenario_builds_leakage_free_splits(scenario):
    from llmcourse.data.jsonl import load_chat_jsonl

    name, project, cfg, seconds = scenario
    assert set(seconds) == set(DAY3_NOTEBOOKS)
    assert cfg.data.scenario == name and not (project / "data" / "built" / "train.jsonl").exists()  # not the FAQ's
    splits = {split: load_chat_jsonl(path) for split, path in
              (("train", cfg.data.train_file), ("val", cfg.data.eval_file), ("test", cfg.data.test_file))}
    report = json.loads((project / cfg.data.built_dir / "data_report.json").read_text())
    assert {split: len(rows) for split, rows in splits.items()} == report["splits"] and report["leakage"]["passed"]
    seen = {_squeeze(row.question) for row in splits["train"]}
    assert not [row.question for split in ("val", "test") for row in splits[split] if _squeeze(row.question) in seen]
    if name == "intent":
        assert {row.answer for row in splits["test"]} <= set(cfg.data.labels)
    else:
        assert all(row.key_facts and all(fact in row.answer for fact in row.key_facts) for row in splits["test"])


def test_scenario_trains_its_own_adapter_and_evaluates_it(scenario):
    name, project, cfg, _ = scenario
    run = project / cfg.train.output_dir
    assert run.name == f"run_{name}" and not (project / "train" / "run").exists()
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "adapter" / "adapter_model.safetensors").is_file()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == SCENARIOS[name]["max_steps"]
    for split, path in (("val", cfg.data.eval_file), ("test", cfg.data.test_file)):
        evaluation = json.loads((run / f"eval_{split}.json").read_text())
        assert evaluation["questions"] == EVAL_LIMIT and evaluation["split_file"] == str(path)


def test_scenario_conversation_went_through_the_api_with_its_model_name(scenario):
    import importlib.util

    name, project, cfg, _ = scenario
    spec = importlib.util.spec_from_file_location("client", ROOT / "day3" / "deploy" / "client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    conversation = json.loads((project / "deploy" / "conversation.json").read_text())
    assert conversation["model"] == cfg.serve.served_model_name == f"day3-{name.replace('_', '-')}"
    assert conversation["served_by"] == "llmcourse"  # serve_engine = "transformers" reached the server
    turns = conversation["turns"]
    assert [t["question"] for t in turns] == client.DEFAULT_QUESTIONS[name]
    assert [t["messages_sent"] for t in turns] == [1, 3] and turns[1]["prompt_tokens"] > turns[0]["prompt_tokens"]
    assert all(t["answer"].strip() and t["completion_tokens"] <= SCENARIOS[name]["max_tokens"] for t in turns)
    rows = json.loads((project / "deploy" / "loadtest" / "loadtest.json").read_text())
    assert [(r["concurrency"], r["requests"], r["errors"]) for r in rows] == [(1, LOAD_REQUESTS, 0), (8, LOAD_REQUESTS, 0)]


def test_scenario_report_and_readme_carry_its_numbers(scenario):
    from llmcourse.evaluation.project import _cell
    from llmcourse.grading.rubric import deployment_evidence

    name, project, cfg, _ = scenario
    run = project / cfg.train.output_dir
    report, readme = (project / "report.md").read_text(), (project / "README.md").read_text()
    train_rows = len((project / cfg.data.train_file).read_text().splitlines())
    test_eval = json.loads((run / "eval_test.json").read_text())
    for text in (report, readme_section(readme, "results")):
        assert f"| 训练 train | {train_rows} |" in text and f"训练 {SCENARIOS[name]['max_steps']} 步" in text
        assert f"| test | {EVAL_LIMIT} | {test_eval['mean_auto_score']} |" in text
        assert f"train/run_{name}/loss_curve.png" in text and f"data/built/{name}/data_report.md" in text
        assert f"模型名 `{cfg.serve.served_model_name}`" in text
    env = json.loads((run / "env.json").read_text())
    assert f"`{SCENARIOS[name]['config']}`（场景 {name}）" in readme_section(readme, "env")
    assert f"torch {env['versions']['torch']}" in readme_section(readme, "env") and "transformers（课程自带" in readme_section(readme, "env")
    launch = readme_section(readme, "launch")
    assert f"llmcourse serve {SCENARIOS[name]['config']}" in launch and f"train/run_{name}/" in launch
    assert f"--config {SCENARIOS[name]['config']}" in launch and f'"model": "{cfg.serve.served_model_name}"' in launch
    answers = [json.loads(line) for line in (project / "verify" / "generations.jsonl").read_text().splitlines()]
    showcase = readme_section(readme, "showcase")
    questions = re.findall(r"^\*\*\d+\. (.+)\*\*$", showcase, flags=re.MULTILINE)
    assert len(questions) == 3 and f"共 {MAX_CASES} 道" in showcase
    for question in questions:  # both models' real answers to each question shown
        asked = {a["model"]: a["text"] for a in answers if _cell(a["question"]) == question}
        assert set(asked) == {"base", "base+rag", "fine_tuned", "fine_tuned+rag"}  # 04_verify's four arms
        shown = {model: text for model, text in asked.items() if model in ("base", "fine_tuned")}
        assert set(shown) == {"base", "fine_tuned"} and all(f"| {_cell(text, 160) or '（空）'} |" in showcase
                                                    for text in shown.values())
    checks = {c["name"]: c for c in deployment_evidence(project, {}, ROOT / "day3" / "README.md", run_api=False)["checks"]}
    assert all(c["earned"] == c["points"] for c in checks.values()), checks

