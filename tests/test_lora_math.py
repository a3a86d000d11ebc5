import torch
from peft import LoraConfig, get_peft_model

from llmcourse.lora_math import lora_parameter_table


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
