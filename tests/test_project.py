"""Day 3 project glue: split cases, README sections, the own-data template, the grader's minimums.

Every scenario end to end (data → train → API → report) runs in tests/test_day3.py.
"""
import shutil

import pytest

from conftest import ROOT, run_cli
from llmcourse.notebooks.run import SKIP
from llmcourse.evaluation.project import RESULTS_END, RESULTS_START, cases_from_split, fill_results


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


def test_fill_sections_checks_every_marker_before_writing(tmp_path):
    from llmcourse.evaluation.project import fill_sections

    readme = tmp_path / "README.md"
    text = "# 项目\n<!-- env:start -->\n旧\n<!-- env:end -->\n<!-- results:start -->\n旧\n<!-- results:end -->\n尾\n"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="showcase:start.*效果展示"):
        fill_sections(readme, {"env": "新环境", "showcase": "新展示", "results": "新结果"})
    assert readme.read_text(encoding="utf-8") == text  # nothing half-written
    fill_sections(readme, {"env": "| 设备 | cpu |", "results": "## 1. 数据"})
    assert readme.read_text(encoding="utf-8") == text.replace("旧", "| 设备 | cpu |", 1).replace("旧", "## 1. 数据")


def test_the_own_data_template_in_01_data_builds_with_the_config_it_shows(project_copy):
    """The CSV and YAML the "换成你的数据" step tells learners to copy give a clean build."""
    import re

    import nbformat
    import yaml
    from llmcourse.config import load_config
    from llmcourse.data.build import build_dataset_from_config

    cells = nbformat.read(ROOT / "day3" / "01_data.ipynb", as_version=4).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown" and "```csv" in c.source)
    table = re.search(r"```csv\n(.*?)```", text, re.S).group(1)
    data = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))["data"]
    (project_copy / data["raw_dir"]).mkdir(parents=True)
    (project_copy / data["raw_dir"] / data["sources"][0]["path"]).write_text(table, encoding="utf-8")
    config = yaml.safe_load((project_copy / "config.yaml").read_text(encoding="utf-8"))
    config["data"].update(data)  # "其余字段不用动"
    (project_copy / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    report = build_dataset_from_config(load_config(project_copy / "config.yaml"))
    rows = len(table.strip().splitlines()) - 1
    assert sum(report.rejected.values()) == 0 and report.leakage["passed"]
    assert sum(report.splits.values()) == 3 * rows  # each row: its question and two paraphrases


def test_data_minimums_come_from_the_rubric(tmp_path):
    import yaml
    from llmcourse.evaluation.project import data_minimums, sizes_vs_minimums
    from llmcourse.grading.rubric import RUBRIC_FILE

    rubric = yaml.safe_load(RUBRIC_FILE.read_text(encoding="utf-8"))
    assert data_minimums() == {name: rubric["assignments"]["day3"]["evidence"]["data"][f"min_{name}"]
                               for name in ("train", "val", "test")}
    rubric["assignments"]["day3"]["evidence"]["data"].update(min_train=7, min_val=1, min_test=2)
    (tmp_path / "rubric.yaml").write_text(yaml.safe_dump(rubric, allow_unicode=True), encoding="utf-8")
    table = sizes_vs_minimums({"train": 6, "val": 1, "test": 2}, rubric_path=tmp_path / "rubric.yaml")
    assert table["评分要求至少"].to_dict() == {"train": 7, "val": 1, "test": 2}
    assert table["够不够"].to_dict() == {"train": "不够", "val": "够", "test": "够"}



def test_split_evaluation_loads_one_model_and_under_nbgrader_reads_the_saved_files(project_copy, monkeypatch):
    import llmcourse.inference.engines
    from llmcourse.grading.checks import check_split_eval
    from llmcourse.config import load_config
    from llmcourse.inference.engines import Generation
    from llmcourse.evaluation.project import evaluate_splits_or_reuse

    config = project_copy / "configs" / "intent.yaml"
    assert run_cli("data", "build", str(config)).returncode == 0
    monkeypatch.chdir(project_copy)
    cfg = load_config(config)
    loads = []

    class Echo:  # answers every question with the first label: scores are real, just not good
        def __init__(self, cfg, adapter_dir):
            loads.append(adapter_dir)

        def generate(self, prompts):
            return [Generation(cfg.data.labels[0], 1, 1, 0.0, None, 0.0) for _ in prompts]

    monkeypatch.setattr(llmcourse.inference.engines, "TransformersEngine", Echo)
    splits = {"val": cfg.data.eval_file, "test": cfg.data.test_file}
    run = project_copy / "run"
    made = evaluate_splits_or_reuse(cfg, "adapter", splits, run, limit=4)
    assert loads == ["adapter"] and made["test"]["questions"] == 4
    assert check_split_eval(run / "eval_test.json") == made["test"]

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    stamps = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    assert evaluate_splits_or_reuse(cfg, "adapter", splits, run, limit=4) == made
    assert loads == ["adapter"] and {p: p.stat().st_mtime_ns for p in run.iterdir()} == stamps
    with pytest.raises(FileNotFoundError, match="评分模式.*eval_val.json"):
        evaluate_splits_or_reuse(cfg, "adapter", splits, project_copy / "never_run", limit=4)
    assert loads == ["adapter"] and not (project_copy / "never_run").exists()
