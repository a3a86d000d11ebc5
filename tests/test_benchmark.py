
import pandas as pd
import pytest

from llmcourse.evaluation.benchmark import COLUMNS, compare_batch_sizes, plot_benchmark, run_benchmark, summary_table
from llmcourse.evaluation.cases import load_cases
from llmcourse.grading.checks import CheckFailed, check_benchmark
from llmcourse.config import load_config
from llmcourse.inference.engines import TransformersEngine
from conftest import CPU_CONFIG, ROOT


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory):
    """A 2-step adapter: enough to check the table's schema and consistency, not its quality."""
    from llmcourse.training.run import train
    run = tmp_path_factory.mktemp("run")
    cfg = load_config(CPU_CONFIG, **{"train.max_steps": 2, "data.max_samples": 8, "train.output_dir": str(run),
                                     "infer.max_tokens": 8})
    train(cfg)
    out = tmp_path_factory.mktemp("bench")
    cases = load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")[:5]
    return run_benchmark(cfg, cases, run / "adapter", out, engines=["transformers"]), out


def test_benchmark_writes_a_consistent_table(small_benchmark):
    table, out = small_benchmark
    assert list(table.columns) == COLUMNS and len(table) == 10
    assert check_benchmark(out, min_cases=5) is not None
    assert "| base | transformers | 5 |" in summary_table(table)
    assert all(p.stat().st_size > 1000 for p in plot_benchmark(table, out))


def test_a_hand_edited_table_is_caught(small_benchmark):
    _, out = small_benchmark
    edited = out.parent / "edited"
    edited.mkdir()
    for name in ("cases.jsonl", "generations.jsonl"):
        (edited / name).write_bytes((out / name).read_bytes())
    table = pd.read_csv(out / "benchmark.csv")
    table.loc[table.model == "base", "auto_score"] = 1.0
    table.to_csv(edited / "benchmark.csv", index=False)
    with pytest.raises(CheckFailed, match="重新计算"):
        check_benchmark(edited)
    table = pd.read_csv(out / "benchmark.csv")
    table = table[table.model == "base"]
    table.to_csv(edited / "benchmark.csv", index=False)
    with pytest.raises(CheckFailed, match="fine_tuned"):
        check_benchmark(edited)


def test_batch_size_comparison_reports_speedup():
    engine = TransformersEngine(load_config(CPU_CONFIG, **{"infer.max_tokens": 4}))
    prompts = [c["messages"] for c in load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")[:4]]
    table = compare_batch_sizes(engine, prompts, sizes=(1, 4))
    assert list(table.batch_size) == [1, 4] and table.speedup.iloc[0] == 1.0
    assert (table.output_tokens > 0).all() and (table.tokens_per_s > 0).all()


def test_compare_answers_finds_the_first_differing_token():
    from llmcourse.evaluation.benchmark import compare_answers
    from llmcourse.inference.engines import Generation

    def gen(ids):
        return Generation(text=str(ids), prompt_tokens=3, output_tokens=len(ids), latency_s=1.0, ttft_s=0.1,
                          tokens_per_s=float(len(ids)), token_ids=ids)

    same = compare_answers([gen([1, 2, 3]), gen([1, 2, 3]), gen([1, 2])], [gen([1, 2, 3]), gen([1, 9, 3]), gen([1, 2, 5])])
    assert same.identical.tolist() == [True, False, False]
    assert same.first_difference_at.tolist()[1:] == [1, 2]
    assert "token_ids" not in gen([1]).to_dict()  # generations.jsonl keeps its columns


def test_compare_engines_measures_each_engine_and_batch_size():
    from llmcourse.evaluation.benchmark import compare_engines, engine_findings
    from llmcourse.config import build_config
    from llmcourse.inference.engines import Generation

    class Fake:
        def __init__(self, per_token):
            self.cfg, self.per_token, self.calls = build_config({"model": {"device": "cpu"}}), per_token, []

        def generate(self, prompts, batch_size=None):
            self.calls.append(batch_size)
            return [Generation(text="答", prompt_tokens=5, output_tokens=11, latency_s=self.per_token * 11,
                               ttft_s=self.per_token, tokens_per_s=1 / self.per_token, token_ids=[1] * 11)
                    for _ in prompts]

    slow, fast = Fake(0.02), Fake(0.01)
    table, answers = compare_engines({"transformers": slow, "vllm": fast}, [[{"role": "user", "content": "q"}]] * 4,
                                     sizes=(1, 4))
    assert slow.calls == [1, 4] and fast.calls == [1, 4]
    assert list(table.engine) == ["transformers", "transformers", "vllm", "vllm"]
    assert table.ms_per_output_token.tolist() == [20.0, 20.0, 10.0, 10.0]
    assert (table.peak_memory_mb > 0).all() and len(answers["vllm"]) == 4
    assert any("vllm 是 transformers 的" in line for line in engine_findings(table))
