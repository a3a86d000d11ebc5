"""Property-based fuzzing: any input to the data loader or the config gets a clear error, never a traceback
of another kind, and input files are never modified."""
import contextlib
import hashlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import yaml
from conftest import CPU_CONFIG
from llmcourse import cli

from llmcourse.config import ConfigError, build_config
from llmcourse.data.jsonl import DataError, load_chat_jsonl

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "bot", ""]) | json_values,
                                 "content": st.text(max_size=20) | json_values})
rows = st.one_of(json_values, st.fixed_dictionaries({"messages": st.lists(message, max_size=5) | json_values}))
lines = st.lists(st.one_of(rows.map(lambda r: json.dumps(r, ensure_ascii=False)), st.text(max_size=30)), max_size=6)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(content=st.one_of(lines.map(lambda ls: "\n".join(ls).encode("utf-8")), st.binary(max_size=200)))
def test_any_file_loads_or_gets_a_data_error_and_stays_untouched(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.jsonl"
        path.write_bytes(content)
        try:
            examples = load_chat_jsonl(path)
            assert examples and all(e.messages[-1]["role"] == "assistant" for e in examples)
        except DataError as exc:
            assert str(path) in str(exc) and exc.problems
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(content).digest()


sections = st.sampled_from(["model", "data", "lora", "train", "infer", "serve", "trainer"])
fields = st.sampled_from(["name", "r", "lora_alpha", "lora_dropout", "learning_rate", "max_steps", "engine",
                          "device", "target_modules", "port", "max_tokens", "rank"])


@FUZZ
@given(overrides=st.dictionaries(st.tuples(sections, fields).map(".".join), json_values, max_size=4),
       raw=st.dictionaries(sections, json_values, max_size=3))
def test_any_config_validates_or_gets_a_config_error(overrides, raw):
    try:
        cfg = build_config(raw, overrides)
        assert cfg.lora.r >= 1 and cfg.train.learning_rate > 0
    except ConfigError as exc:
        assert "问题" in str(exc) or "段落" in str(exc) or "覆盖参数" in str(exc)


yaml_texts = st.one_of(
    st.dictionaries(sections, st.dictionaries(fields, json_values, max_size=4) | json_values, max_size=4)
    .map(lambda tree: yaml.safe_dump(tree, allow_unicode=True)),
    st.lists(st.sampled_from(["model:", "  name: gemma3-270m", "lora:", "  r: 2001-13-01", "  r: [", "train: {",
                              "\t- x", "data: !!python/object:os.system x", "serve:", "  port: 99999", ": :", "- a"]),
             max_size=6).map("\n".join),
    st.text(max_size=60))


@FUZZ
@given(content=st.one_of(yaml_texts.map(lambda text: text.encode("utf-8")), st.binary(max_size=120)))
@example(content=b"lora:\n  r: 2001-13-01")  # PyYAML builds a date from it and fails: found by this test
def test_any_config_file_gets_a_clear_cli_error_and_stays_untouched(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_bytes(content)
        stderr = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            code = cli.main(["check-config", str(path)])
        assert code in (0, 2)
        if code == 2:
            assert stderr.getvalue().startswith("错误：") and "Traceback" not in stderr.getvalue()
        assert path.read_bytes() == content


@FUZZ
@given(value=st.text(max_size=30) | st.sampled_from(["2001-13-01", "[", "{a: ", "0000-00-00", "!!binary x"]))
def test_any_command_line_override_gets_a_clear_cli_error(value):
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = cli.main(["check-config", str(CPU_CONFIG), f"lora.r={value}"])
    assert code in (0, 2)
    if code == 2:
        assert stderr.getvalue().startswith("错误：") and "Traceback" not in stderr.getvalue()
