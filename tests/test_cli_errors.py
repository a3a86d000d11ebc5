"""Every ``llmcourse`` command, given a mistake a user can make, prints ``错误：…`` and exits 2, never a traceback.

The commands are read from the CLI's argparse parser, so a new command without cases here fails
:func:`test_every_command_has_cases`. Every case fails in validation, before any model loads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CPU_CONFIG, ROOT, TRAIN_FILE
from llmcourse.cli import _parser, main
from llmcourse.errors import CourseError

# A config mistake per kind: each replaces (or adds) one section of a valid config.
BAD_CONFIGS = {
    "yaml_syntax": "model: [gemma3-270m\nlora: {r: 8\n",
    "unknown_field": {"lora": {"rank": 8}},
    "wrong_type": {"lora": {"r": "eight"}},
    "out_of_range": {"model": {"max_seq_length": 8}},
}
# Chat JSONL mistakes: a line that is not JSON, and JSON without the chat schema.
BAD_JSONL = {
    "malformed_line": '{"messages": [{"role": "user", "content": "退货期多久？"}\n',
    "wrong_schema": json.dumps({"question": "退货期多久？", "answer": "7 天"}, ensure_ascii=False) + "\n",
}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command path, e.g. ("doctor",), ("data", "build"), ("grade", "export")."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [prefix]
    return [leaf for name, sub in groups[0].choices.items() for leaf in _leaves(sub, (*prefix, name))]


def _config(tmp: Path, kind: str) -> str:
    """A bad config file (or a missing one) written from the course's CPU config."""
    path = tmp / f"{kind}.yaml"
    if kind == "missing_file":
        return str(tmp / "no_such_config.yaml")
    bad = BAD_CONFIGS[kind]
    if isinstance(bad, str):
        path.write_text(bad, encoding="utf-8")
    else:
        tree = yaml.safe_load(CPU_CONFIG.read_text(encoding="utf-8"))
        for section, fields in bad.items():
            tree[section] = {**tree.get(section, {}), **fields}
        path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return str(path)


def _jsonl(tmp: Path, kind: str) -> str:
    path = tmp / f"{kind}.jsonl"
    if kind != "missing_jsonl":
        path.write_text(BAD_JSONL[kind], encoding="utf-8")
    return str(path)


def _build_config(tmp: Path, raw: str) -> str:
    """A data-build config over one raw CSV: missing, not a CSV the config describes, or an xlsx that is not one."""
    raw_dir = tmp / "raw"
    raw_dir.mkdir(exist_ok=True)
    name = {"missing_raw": "export.csv", "wrong_columns": "export.csv", "malformed_xlsx": "kb.xlsx"}[raw]
    if raw == "wrong_columns":
        (raw_dir / name).write_text("客户消息,回复\n退货期多久？,7 天\n", encoding="utf-8")
    if raw == "malformed_xlsx":
        (raw_dir / name).write_bytes(b"this is not a zip archive")
    source = {"path": name, "kind": "xlsx" if name.endswith("xlsx") else "csv",
              "question_column": "问题", "answer_column": "答案"}
    tree = {"data": {"raw_dir": str(raw_dir), "sources": [source], "built_dir": str(tmp / "built"),
                     "train_file": str(tmp / "built/train.jsonl"), "eval_file": str(tmp / "built/val.jsonl"),
                     "test_file": str(tmp / "built/test.jsonl")}}
    path = tmp / f"build_{raw}.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return str(path)


def _run_dir(tmp: Path, problem: str) -> str:
    """A training-run folder with one problem: no adapter, or an eval file that is not chat JSONL."""
    run = tmp / f"run_{problem}"
    run.mkdir()
    tree = yaml.safe_load(CPU_CONFIG.read_text(encoding="utf-8"))
    tree["train"]["output_dir"] = str(run)
    tree["data"]["train_file"] = str(TRAIN_FILE)
    tree["data"]["eval_file"] = _jsonl(tmp, "malformed_line")
    if problem == "bad_eval_file":
        (run / "adapter").mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return str(run)


def _with_key(tmp: Path) -> str:
    tree = yaml.safe_load(CPU_CONFIG.read_text(encoding="utf-8"))
    tree.setdefault("serve", {})["api_key"] = "test-key"
    path = tmp / "with_key.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return str(path)


def _hub_settings(tmp: Path, **fields) -> str:
    """Course hub settings whose state (and exchange) live in the scratch folder."""
    path = tmp / "hub.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp / "hub"), **fields}), encoding="utf-8")
    return str(path)


def _without_fact_id(tmp: Path) -> str:
    """A valid chat JSONL whose rows say nothing of which fact they ask about."""
    path = tmp / "no_fact_id.jsonl"
    rows = [json.loads(line) for line in TRAIN_FILE.read_text(encoding="utf-8").splitlines()[:3]]
    path.write_text("".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def _config_cases(command: tuple[str, ...], extra: list[str] = ()) -> dict:
    kinds = ["missing_file", *BAD_CONFIGS]
    return {kind: (lambda tmp, kind=kind: [*command, _config(tmp, kind), *extra]) for kind in kinds}


def _data_cases(command: list[str], override: str | None) -> dict:
    """Bad chat JSONL, passed as the path argument or as ``data.train_file=`` on the CPU config."""
    def argv(tmp, kind):
        path = _jsonl(tmp, kind)
        return [*command, path] if override is None else [*command, str(CPU_CONFIG), f"{override}={path}",
                                                           f"train.output_dir={tmp / 'run'}"]
    return {kind: (lambda tmp, kind=kind: argv(tmp, kind)) for kind in ["missing_jsonl", *BAD_JSONL]}


CASES: dict[tuple[str, ...], dict] = {
    ("doctor",): {"usage_error": lambda tmp: ["doctor", "--no-such-option"]},
    ("prepare-model",): {"unknown_model": lambda tmp: ["prepare-model", "gpt-9"],
                         "not_a_stand_in": lambda tmp: ["prepare-model", "qwen3-8b"],
                         "usage_error": lambda tmp: ["prepare-model"]},
    ("check-config",): {**_config_cases(("check-config",)),
                        "bad_override": lambda tmp: ["check-config", str(CPU_CONFIG), "lora.r=-2"],
                        "override_syntax": lambda tmp: ["check-config", str(CPU_CONFIG), "lora.r"]},
    ("data-summary",): _data_cases(["data-summary"], None),
    ("data", "build"): {**_config_cases(("data", "build")),
                        "no_sources": lambda tmp: ["data", "build", str(CPU_CONFIG)],
                        **{raw: (lambda tmp, raw=raw: ["data", "build", _build_config(tmp, raw)])
                           for raw in ("missing_raw", "wrong_columns", "malformed_xlsx")}},
    ("data", "add-context"): {**_data_cases(["data", "add-context"], None),
                              "no_fact_id": lambda tmp: ["data", "add-context", _without_fact_id(tmp)],
                              "bad_every": lambda tmp: ["data", "add-context", str(TRAIN_FILE), "--every", "0",
                                                        "--out", str(tmp / "out.jsonl")]},
    ("train",): {**_config_cases(("train",)), **_data_cases(["train"], "data.train_file"),
                 "bad_override": lambda tmp: ["train", str(CPU_CONFIG), "train.max_steps=-5"]},
    ("run-course",): {"unknown_day": lambda tmp: ["run-course", "--out", str(tmp / "out"), "--days", "day9"],
                      "bad_profile": lambda tmp: ["run-course", "--profile", "gpu"]},
    ("serve",): {**_config_cases(("serve",)),
                 "missing_adapter": lambda tmp: ["serve", str(CPU_CONFIG), "serve.api_key=k",
                                                 f"train.output_dir={tmp / 'no_run'}"]},
    ("chat",): {**_config_cases(("chat",), ["退货期多久？"]),
                # with a key, but no server on port 9 (discard): the user forgot `llmcourse serve`
                "no_api_key": lambda tmp: ["chat", str(CPU_CONFIG), "退货期多久？", "--base-url", "http://127.0.0.1:9/v1"],
                "no_server": lambda tmp: ["chat", _with_key(tmp), "退货期多久？", "--base-url", "http://127.0.0.1:9/v1"]},
    ("evaluate",): {"missing_run": lambda tmp: ["evaluate", str(tmp / "no_run")],
                    "no_adapter": lambda tmp: ["evaluate", _run_dir(tmp, "no_adapter")],
                    "bad_eval_file": lambda tmp: ["evaluate", _run_dir(tmp, "bad_eval_file")],
                    "bad_limit": lambda tmp: ["evaluate", _run_dir(tmp, "bad_eval_file"), "--limit", "0"]},
    ("student",): {"unknown_day": lambda tmp: ["student", "--out", str(tmp / "learner"), "--days", "day9"]},
    ("grade", "release"): {"unknown_assignment": lambda tmp: ["grade", "release", "day9", "--course", str(tmp)]},
    ("grade", "collect"): {"missing_source": lambda tmp: ["grade", "collect", "day1", str(tmp / "inbox"),
                                                          "--course", str(tmp)]},
    ("grade", "autograde"): {"not_released": lambda tmp: ["grade", "autograde", "day1", "--course", str(tmp)],
                             "bad_workers": lambda tmp: ["grade", "autograde", "day1", "--workers", "many"]},
    ("grade", "feedback"): {"not_graded": lambda tmp: ["grade", "feedback", "day1", "--course", str(tmp)]},
    ("grade", "export"): {"no_gradebook": lambda tmp: ["grade", "export", "--course", str(tmp)]},
    # the course hub: every case fails before a process starts or a file is written
    ("hub", "start"): {"bad_learner_name": lambda tmp: ["hub", "start", "--learners", "Alice,b+c"],
                       "learner_is_instructor": lambda tmp: ["hub", "start", "--learners", "instructor,bob"],
                       "no_proxy": lambda tmp: ["hub", "start", "--settings", _hub_settings(tmp, proxy="no-proxy")],
                       "missing_settings": lambda tmp: ["hub", "start", "--settings", str(tmp / "no_hub.yaml")],
                       "bad_port": lambda tmp: ["hub", "start", "--port", "eighty"]},
    ("hub", "release"): {"unknown_assignment": lambda tmp: ["hub", "release", "day9", "--course", str(tmp),
                                                            "--settings", _hub_settings(tmp)]},
    ("hub", "collect"): {"nothing_submitted": lambda tmp: ["hub", "collect", "day1", "--course", str(tmp),
                                                           "--settings", _hub_settings(tmp)]},
    ("hub", "return-feedback"): {"no_feedback": lambda tmp: ["hub", "return-feedback", "day1", "--course", str(tmp),
                                                             "--settings", _hub_settings(tmp)]},
}


def test_every_command_has_cases():
    commands = set(_leaves(_parser()))
    assert commands == set(CASES), f"commands without cases: {commands - set(CASES)}; stale: {set(CASES) - commands}"


@pytest.mark.parametrize("command,case", [(c, k) for c, cases in CASES.items() for k in cases],
                         ids=lambda v: "-".join(v) if isinstance(v, tuple) else v)
def test_user_mistake_is_one_chinese_message(command, case, tmp_path):
    argv = CASES[command][case](tmp_path)
    # No API key lying around, and no model loads: a case that got past validation to a model load fails
    # (ModelLoadForbidden names the variable) instead of costing a minute.
    done = subprocess.run([sys.executable, "-m", "llmcourse.cli", *argv], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**_env(), "LLMCOURSE_NO_MODEL_LOADS": "1"})
    assert "Traceback" not in done.stderr, done.stderr
    assert "LLMCOURSE_NO_MODEL_LOADS" not in done.stderr, "reached a model load instead of failing in validation"
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert done.stderr.startswith("错误："), done.stderr
    assert len(done.stderr.strip()) > len("错误：") + 5, done.stderr  # a message, not just the prefix
    if case == "no_server":
        assert "连不上服务" in done.stderr, done.stderr


def _env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k != "LLMCOURSE_API_KEY"} | {"PYTHONUNBUFFERED": "1"}


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only CourseError is turned into a message: any other exception is a bug and must surface."""
    import llmcourse.cli as cli

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["doctor"])


def test_user_errors_share_the_base():
    from llmcourse.artifacts import ArtifactMissing, LogLineInvalid
    from llmcourse.config import ConfigError
    from llmcourse.data.jsonl import DataError
    from llmcourse.env.models import ModelLoadForbidden, UnknownModel
    from llmcourse.grading.rubric import RubricError
    from llmcourse.grading.workflow import GradingError

    for cls in (ConfigError, DataError, RubricError, GradingError, ArtifactMissing, LogLineInvalid,
                ModelLoadForbidden, UnknownModel):
        assert issubclass(cls, CourseError), cls
    # the builtin bases callers already catch are kept
    assert issubclass(ConfigError, ValueError) and issubclass(ArtifactMissing, FileNotFoundError)
    assert issubclass(UnknownModel, KeyError) and str(UnknownModel("未知模型 'x'")) == "未知模型 'x'"
