"""One inference interface over two engines: transformers (CPU or GPU) and vLLM (GPU only).

Usage::

    from llmcourse.infer import load_engine
    engine = load_engine(cfg, adapter_dir="runs/day1/adapter")       # infer.engine: auto
    results = engine.generate([[{"role": "user", "content": "退货期多久？"}]])
    results[0].text, results[0].output_tokens, results[0].latency_s, results[0].tokens_per_s

Both engines take chat prompts (lists of messages) and return one :class:`Generation` per prompt.
*transformers*: batched ``generate`` with the PEFT adapter on top of the base model (left padding).
Every prompt of a batch waits for the whole batch, so its latency is the batch's wall time; time
to first token is when the first new token of the batch exists. On a CPU with native bf16, greedy
batches score the vocabulary with a bf16 copy of the LM head and rescore its top candidates in fp32
(same answers, about twice the batched throughput: see :func:`_screened_greedy_head`).
*vLLM*: ``LLM`` + ``LoRARequest``, the adapter unmerged, ``max_lora_rank`` from ``infer.max_lora_rank``
(or ``lora.r``). vLLM is imported only here, and only on a GPU machine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llmcourse.config import CourseConfig
from llmcourse.lane import cpu_has_native_bf16, library_version, resolve_device
from llmcourse.models import get_model
from llmcourse.train import _torch_dtype, apply_template, resolve_model_path, use_course_template


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    ttft_s: float | None
    tokens_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def load_model(cfg: CourseConfig, adapter_dir: str | Path | None = None):
    """The base model (plus the LoRA adapter when given), in eval mode, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(cfg.model.device)
    path = resolve_model_path(cfg)
    tokenizer = use_course_template(AutoTokenizer.from_pretrained(adapter_dir or path), cfg)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(cfg, device)).to(device)
    if adapter_dir:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    return model.eval(), tokenizer


# Batches of at least this many prompts use the screened head on CPUs with native bf16 (``make bench``:
# at one prompt the bf16 pass is no faster than fp32 and the screening costs extra).
SCREEN_FROM_BATCH = 2


def _screened_greedy_head(head, candidates: int = 64):
    """Wrap an LM head (``nn.Linear``, no bias) for greedy decoding of batches on a CPU with native bf16.

    A bf16 copy of the head scores the whole vocabulary (one pass of the 262k x 640 Gemma head costs
    more than the rest of a decode step, and fp32 matrix products of a few rows are slow), its best
    ``candidates`` tokens per row are scored again exactly with the fp32 weights, and every other token
    gets -inf. Greedy decoding reads only the argmax, which is then the fp32 head's own unless bf16
    rounding (about 0.4 %) pushed the true best token out of the top 64: the greedy answers are
    checked equal to the fp32 head's by tests/test_infer.py and by ``make bench``. ``screen`` off
    (sampling, single prompts) gives the plain fp32 head.
    """
    import torch

    class ScreenedGreedyHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.exact = head
            self.rough = head.weight.detach().to(torch.bfloat16)
            self.candidates = candidates
            self.screen = False

        @property
        def weight(self):  # what code reading lm_head.weight expects
            return self.exact.weight

        def forward(self, hidden):
            if not self.screen:
                return self.exact(hidden)
            rough = torch.nn.functional.linear(hidden.to(torch.bfloat16), self.rough)
            best = rough.topk(self.candidates, dim=-1).indices
            exact = torch.einsum("...kd,...d->...k", self.exact.weight[best], hidden)
            return torch.full(rough.shape, float("-inf"), dtype=hidden.dtype).scatter_(-1, best, exact)

    return ScreenedGreedyHead()


def _first_token_timer():
    """A stopping criterion that never stops, but notes when the first new token was produced."""
    from transformers import StoppingCriteria

    class FirstTokenTimer(StoppingCriteria):
        def __init__(self):
            self.first = None

        def __call__(self, input_ids, scores, **kwargs):
            import torch
            if self.first is None:
                self.first = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return FirstTokenTimer()


class TransformersEngine:
    name = "transformers"

    def __init__(self, cfg: CourseConfig, adapter_dir: str | Path | None = None):
        self.cfg, self.adapter_dir = cfg, adapter_dir
        self.model, self.tokenizer = load_model(cfg, adapter_dir)
        spec = get_model(cfg.model.name)
        stop_ids = [self.tokenizer.convert_tokens_to_ids(s) for s in spec.stop_strings]
        self.eos_ids = sorted({self.tokenizer.eos_token_id, *stop_ids} - {None})
        self.head = self._install_screened_head()
        self.use_screened_head = self.head is not None  # make bench turns it off to compare

    def _install_screened_head(self):
        """The screened head (see :func:`_screened_greedy_head`) where it pays: fp32 on a CPU with native bf16."""
        import torch

        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        head = base.get_output_embeddings()
        if not (self.model.device.type == "cpu" and cpu_has_native_bf16() and type(head) is torch.nn.Linear
                and head.bias is None and head.weight.dtype == torch.float32):
            return None
        screened = _screened_greedy_head(head)
        base.set_output_embeddings(screened)
        return screened

    def _generate_batch(self, prompts: list[list[dict]]) -> list[Generation]:
        import torch

        infer = self.cfg.infer
        texts = [apply_template(self.tokenizer, m, self.cfg, generation_prompt=True) for m in prompts]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sampling = {"do_sample": True, "temperature": infer.temperature, "top_p": infer.top_p} \
            if infer.temperature > 0 else {"do_sample": False}
        timer = _first_token_timer()
        if self.head is not None:
            self.head.screen = self.use_screened_head and infer.temperature == 0 and len(prompts) >= SCREEN_FROM_BATCH
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**encoded, max_new_tokens=infer.max_tokens, eos_token_id=self.eos_ids,
                                         pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=[timer],
                                         **sampling)
        latency = time.perf_counter() - started
        ttft = None if timer.first is None else round(timer.first - started, 4)
        results = []
        for row, prompt_ids in zip(output[:, encoded["input_ids"].shape[1]:], encoded["attention_mask"]):
            ids = row.tolist()
            ended = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
            count = len(ids) if ended is None else ended + 1
            text = self.tokenizer.decode(ids[:count], skip_special_tokens=True).strip()
            results.append(Generation(text=text, prompt_tokens=int(prompt_ids.sum()), output_tokens=count,
                                      latency_s=round(latency, 4), ttft_s=ttft,
                                      tokens_per_s=round(count / latency, 2)))
        return results

    def generate(self, prompts: list[list[dict]], batch_size: int | None = None,
                 progress: bool = False) -> list[Generation]:
        from tqdm.auto import tqdm

        size = batch_size or self.cfg.infer.batch_size
        results: list[Generation] = []
        for start in tqdm(range(0, len(prompts), size), desc="生成", disable=not progress, leave=False):
            results += self._generate_batch(prompts[start:start + size])
        return results


class VLLMEngine:
    name = "vllm"

    def __init__(self, cfg: CourseConfig, adapter_dir: str | Path | None = None):
        from vllm import LLM

        self.cfg, self.adapter_dir = cfg, adapter_dir
        self.spec = get_model(cfg.model.name)
        self.llm = LLM(model=resolve_model_path(cfg), enable_lora=adapter_dir is not None,
                       max_lora_rank=cfg.infer.max_lora_rank or cfg.lora.r, max_loras=1,
                       gpu_memory_utilization=cfg.infer.gpu_memory_utilization,
                       max_model_len=cfg.infer.max_model_len or cfg.model.max_seq_length, seed=cfg.train.seed)

    def generate(self, prompts: list[list[dict]], batch_size: int | None = None,
                 progress: bool = False) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        infer = self.cfg.infer
        params = SamplingParams(temperature=infer.temperature, top_p=infer.top_p, max_tokens=infer.max_tokens,
                                stop=list(self.spec.stop_strings))
        lora = LoRARequest("course-adapter", 1, str(self.adapter_dir)) if self.adapter_dir else None
        extra = {"chat_template_kwargs": {"enable_thinking": self.cfg.model.enable_thinking}} if self.spec.thinking else {}
        started = time.perf_counter()
        outputs = self.llm.chat(prompts, params, lora_request=lora, use_tqdm=progress,
                                chat_template=self.spec.chat_template, **extra)
        latency = time.perf_counter() - started
        results = []
        for output in outputs:
            completion = output.outputs[0]
            metrics = getattr(output, "metrics", None)
            ttft = None
            if metrics is not None and getattr(metrics, "first_token_time", None) and getattr(metrics, "arrival_time", None):
                ttft = round(metrics.first_token_time - metrics.arrival_time, 4)
            count = len(completion.token_ids)
            results.append(Generation(text=completion.text.strip(), prompt_tokens=len(output.prompt_token_ids),
                                      output_tokens=count, latency_s=round(latency, 4), ttft_s=ttft,
                                      tokens_per_s=round(count / latency, 2)))
        return results


def available_engines() -> list[str]:
    engines = ["transformers"]
    if resolve_device("auto") == "cuda" and library_version("vllm"):
        engines.append("vllm")
    return engines


def load_engine(cfg: CourseConfig, adapter_dir: str | Path | None = None, engine: str | None = None):
    """``infer.engine`` (or ``engine``): ``auto`` = vLLM on a GPU with vLLM installed, else transformers."""
    choice = engine or cfg.infer.engine
    if choice == "auto":
        choice = available_engines()[-1]
    if choice == "vllm" and "vllm" not in available_engines():
        raise RuntimeError("vLLM 只能在 NVIDIA GPU 上运行（需要 CUDA 和 pip install -e .[gpu]）；"
                           "本机请用 infer.engine: transformers")
    return VLLMEngine(cfg, adapter_dir) if choice == "vllm" else TransformersEngine(cfg, adapter_dir)
