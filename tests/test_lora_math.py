import torch
from peft import LoraConfig, get_peft_model

from llmcourse.training.lora_math import lora_parameter_table


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = torch.nn.Linear(8, 16)
        self.v_proj = torch.nn.Linear(8, 4)
        self.other = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.other(self.v_proj(x))


def test_counts_match_what_peft_trains():
    table = lora_parameter_table(Tiny(), ["q_proj", "v_proj"], ranks=[2, 4])
    assert [row["lora_params"] for row in table] == [2 * (8 + 16) + 2 * (8 + 4), 4 * (8 + 16) + 4 * (8 + 4)]
    peft_model = get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == table[0]["lora_params"]
    assert 0 < table[0]["percent"] < 100


def test_adapter_size_is_four_bytes_a_parameter_on_the_real_shapes():
    from llmcourse.training.lora_math import adapter_sizes
    from llmcourse.env.models import get_model
    table = lora_parameter_table(Tiny(), ["q_proj", "v_proj"], ranks=[2])
    assert table[0]["adapter_mb"] == round(table[0]["lora_params"] * 4 / 1e6, 1)
    small, big = adapter_sizes(["gemma3-270m", "qwen3-4b-instruct-2507"], r=16)
    shape = get_model("qwen3-4b-instruct-2507").shape
    assert big["lora_params"] == shape.num_hidden_layers * 16 * sum(sum(s) for s in shape.linear_shapes().values())
    assert big["adapter_mb"] == round(big["lora_params"] * 4 / 1e6, 1) and big["adapter_mb"] > 5 * small["adapter_mb"]
    assert adapter_sizes(["gemma3-270m"], r=32)[0]["lora_params"] == 2 * small["lora_params"]


def test_day1_prose_states_the_computed_adapter_sizes():
    import nbformat
    from conftest import ROOT
    from llmcourse.training.lora_math import adapter_sizes
    cells = nbformat.read(ROOT / "day1" / "02_lora_training.ipynb", as_version=4).cells
    text = next(c.source for c in cells if c.get("id") == "3c9d1a03")
    for row in adapter_sizes(["gemma3-270m", "qwen3-4b-instruct-2507"], r=32):  # the reference answer's r, as the prose says
        assert f"{row['lora_params']:,} 个参数" in text and f"{row['adapter_mb']:.0f}" in text, row


def test_the_outline_counts_what_the_loaded_model_counts(monkeypatch):
    """Under nbgrader Day 1's demo cells count on the model's outline (no weights): the same numbers."""
    from llmcourse.config import build_config
    from llmcourse.inference.engines import load_model, load_weights
    from llmcourse.env.models import ModelOutline, get_model

    cfg = build_config({"model": {"name": "gemma3-270m", "device": "cpu"}})
    targets = list(get_model("gemma3-270m").target_modules)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    outline, tokenizer = load_model(cfg)
    assert isinstance(outline, ModelOutline) and tokenizer is None
    monkeypatch.delenv("NBGRADER_EXECUTION")
    model, _ = load_weights(cfg)
    assert lora_parameter_table(outline, targets, [4, 16]) == lora_parameter_table(model, targets, [4, 16])
