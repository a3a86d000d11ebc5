"""Day 3's learner-written steps: each graded check that reads one passes on a right answer's artifacts and
fails on a wrong or empty one. The checks run as the grader's recheck runs them: the test cell's own source,
with only the parameters, the answers and ``Path``, in the project folder (no kernel, no model)."""
import contextlib
import json
import shutil

import nbformat
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from llmcourse.grading.cohort import write_run

DAY3 = ROOT / "day3"


def graded(notebook: str, grade_id: str) -> str:
    cells = nbformat.read(DAY3 / notebook, as_version=4).cells
    return next(c.source for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def passes(notebook: str, grade_id: str, folder, **answers) -> bool:
    from pathlib import Path

    namespace = {"config_path": "config.yaml", "Path": Path, **answers}
    with contextlib.chdir(folder):
        try:
            exec(compile(graded(notebook, grade_id), f"<{notebook}#{grade_id}>", "exec"), namespace)  # noqa: S102
        except (AssertionError, FileNotFoundError, KeyError, TypeError):
            return False
    return True


@pytest.fixture
def project(tmp_path):
    shutil.copy(DAY3 / "config.yaml", tmp_path / "config.yaml")
    return tmp_path


def _built(project, train_text="", **settings):
    built = project / "data" / "built"
    built.mkdir(parents=True, exist_ok=True)
    rules = {"mask_pii": True, "min_chars": 4, "max_chars": 120, "near_duplicate_threshold": 0.85} | settings
    (built / "data_report.json").write_text(json.dumps({"settings": rules}), encoding="utf-8")
    (built / "train.jsonl").write_text(train_text, encoding="utf-8")


def test_cleaning_rules_check(project):
    clean = json.dumps({"messages": [{"role": "user", "content": "我的手机号是[手机号]，能改地址吗？"}]}, ensure_ascii=False)
    assert not passes("01_data.ipynb", "check_cleaning_rules", project)  # nothing built
    _built(project, clean)
    assert passes("01_data.ipynb", "check_cleaning_rules", project)
    for wrong in ({"mask_pii": False}, {"min_chars": 0}, {"max_chars": 5000}, {"near_duplicate_threshold": 0.3}):
        _built(project, clean, **wrong)
        assert not passes("01_data.ipynb", "check_cleaning_rules", project), wrong
    _built(project, clean.replace("[手机号]", "13812345678"))
    assert not passes("01_data.ipynb", "check_cleaning_rules", project)


def test_lora_check(project):
    run = project / "train" / "run"
    assert not passes("02_train.ipynb", "check_lora", project)  # not trained
    write_run(run, config=project / "config.yaml")
    assert passes("02_train.ipynb", "check_lora", project)
    for lora in ({"r": 256, "lora_alpha": 512}, {"r": 16, "lora_alpha": 16}, {"r": 8, "lora_alpha": 16}):
        # a run of LoRA values out of the allowed ones, or other than the project's config.yaml
        raw = yaml.safe_load((project / "config.yaml").read_text(encoding="utf-8"))
        raw["lora"].update(lora)
        (project / "other.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        shutil.rmtree(run)
        write_run(run, config=project / "other.yaml")
        assert not passes("02_train.ipynb", "check_lora", project), lora


def _conversation(project, sent, answers=("七天内可以退。", "生鲜签收后24小时内。")):
    deploy = project / "deploy"
    (deploy / "loadtest").mkdir(parents=True, exist_ok=True)
    rows = [{"concurrency": c, "requests": 4, "errors": 0, "latency_p50_ms": 10.0, "requests_per_s": 1.0} for c in (1, 8)]
    (deploy / "loadtest" / "loadtest.json").write_text(json.dumps(rows), encoding="utf-8")
    turns = [{"question": f"问题{i}", "answer": a, "messages_sent": s} for i, (a, s) in enumerate(zip(answers, sent))]
    (deploy / "conversation.json").write_text(json.dumps({"turns": turns}, ensure_ascii=False), encoding="utf-8")


def test_conversation_check(project):
    assert not passes("03_deploy.ipynb", "check_deploy", project)  # never chatted
    _conversation(project, [1, 3])
    assert passes("03_deploy.ipynb", "check_deploy", project)
    _conversation(project, [1, 1])  # the follow-up did not carry the history
    assert not passes("03_deploy.ipynb", "check_deploy", project)
    _conversation(project, [])  # the skeleton's chat() returns no turns
    assert not passes("03_deploy.ipynb", "check_deploy", project)
    _conversation(project, [1, 3], answers=("七天内可以退。", ""))
    assert not passes("03_deploy.ipynb", "check_deploy", project)


def test_improvement_check(project):
    (project / "verify").mkdir()
    table = pd.DataFrame({"model": ["base", "base", "fine_tuned", "fine_tuned"], "auto_score": [0.0, 0.5, 1.0, 0.5]})
    table.to_csv(project / "verify" / "benchmark.csv", index=False)
    right = {"mean_scores": {"base": 0.25, "fine_tuned": 0.75}, "improvement": 0.5}
    assert passes("04_verify.ipynb", "check_improvement", project, **right)
    for wrong in ({"improvement": None}, {"improvement": -0.5}, {"improvement": 0.75},
                  {"mean_scores": {"base": None, "fine_tuned": None}}):
        assert not passes("04_verify.ipynb", "check_improvement", project, **(right | wrong)), wrong
