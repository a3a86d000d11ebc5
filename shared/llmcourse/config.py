"""One YAML config for notebooks, the CLI and the no-code form.

Usage::

    from llmcourse.config import load_config
    cfg = load_config("day1/configs/gemma3-270m_lora_sft.yaml", **{"lora.r": 8})
    cfg.lora.r            # 8
    cfg.train.output_dir  # absolute path

On the command line the same overrides are written ``lora.r=8 train.max_steps=20``.

Sections and field names follow the libraries they feed, unchanged:
``lora`` = PEFT ``LoraConfig``, ``train`` = TRL ``SFTConfig`` (plus ``engine``),
``infer`` = vLLM ``SamplingParams`` / ``LLM`` arguments, ``serve`` = ``vllm serve`` options.

Relative paths written in a YAML file are resolved against that file's folder; relative
paths given as overrides are resolved against the current working directory.
A bad value raises :class:`ConfigError` whose message (in Chinese) names the field,
the value and what is allowed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    PrivateAttr,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmcourse.env.models import MODEL_NAMES
from llmcourse.errors import CourseError


class ConfigError(CourseError, ValueError):
    """A config that cannot be used; the message says what to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    # The learner-facing help of every field is its description (Chinese); llmcourse.config_docs turns it,
    # with the choices and range of its type, into the YAML comments and the no-code form's tooltips.
    name: str = Field("gemma3-270m", title="模型", json_schema_extra={"choices": list(MODEL_NAMES)},
                      description="基座模型在课程模型表里的名字（CPU 上用替身模型，GPU 上用真实模型）")
    source: Literal["hf", "modelscope", "local"] = Field(
        "local", description="权重从哪里来：hf = Hugging Face，modelscope = 魔搭，local = 本地"
                             "（替身模型总是 local：llmcourse prepare-model）")
    path: str | None = Field(None, description="本地模型文件夹，填了就不用模型表里的位置；null：按模型表")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="运行设备；auto：有 GPU 用 cuda，否则 cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="权重精度（transformers 的 dtype）；auto：CPU 上 float32，GPU 上支持时 bfloat16")
    load_in_4bit: bool = Field(False, description="true：QLoRA，基座权重以 4 bit 加载（bitsandbytes），省显存")
    max_seq_length: int = Field(256, ge=32, le=32768,
                                description="加载模型时的最长序列（Unsloth 的 max_seq_length），单位 token")
    enable_thinking: bool = Field(False, description="只对 Qwen3：是否开启思考模式；关掉回答更直接")

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_NAMES:
            raise ValueError(f"unknown model; choices: {' | '.join(MODEL_NAMES)}")
        return value


_TABLE_OPTIONS = ("question_column", "answer_column", "paraphrase_column", "fact_column", "topic_column",
                  "label_column", "key_facts_column")


class DataSource(_Section):
    """One raw file for ``llmcourse data build``; the ``*_column`` options name the file's own headers."""

    path: str = Field(description="原始文件的路径，相对 data.raw_dir")
    kind: Literal["csv", "xlsx", "markdown"] = Field(description="文件类型")
    use: Literal["rows", "reference"] = Field(
        "rows", description="只用于 markdown：rows = 问题标题变成数据行；reference = 现行政策，用来核对关键信息是否过时")
    encoding: str = Field("utf-8", description="只用于 csv：文件编码，中文 Excel 导出的常是 gbk")
    delimiter: str = Field(",", description="只用于 csv：分隔符，一个字符")
    sheet: str | None = Field(None, description="只用于 xlsx：工作表名；null：第一个工作表")
    question_column: str | None = Field(None, description="问题所在列的列名（表格必填）")
    answer_column: str | None = Field(None, description="标准答案所在列；null：用 fact_column 指向的那条知识的答案")
    paraphrase_column: str | None = Field(None, description="相似问法所在列：一个单元格里多个问题，每行一个")
    fact_column: str | None = Field(None, description="知识编号所在列：把问题关联到知识库里的一条知识")
    topic_column: str | None = Field(None, description="分类所在列")
    label_column: str | None = Field(None, description="意图标签所在列（intent 场景）")
    key_facts_column: str | None = Field(None, description="关键信息所在列：好回答必须包含的词，用 ; 或换行分隔")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError("未知编码；常用：utf-8 | utf-8-sig | gbk") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("分隔符必须是一个字符，例如 , 或 \\t")
        return value

    @model_validator(mode="after")
    def _options_fit_kind(self) -> DataSource:
        # A resolved config written back to YAML spells out every default; only a changed value is a mistake.
        given = {name for name in self.model_fields_set
                 if getattr(self, name) != type(self).model_fields[name].default}
        if self.kind == "markdown":
            wrong = [name for name in (*_TABLE_OPTIONS, "sheet", "encoding", "delimiter") if name in given]
        else:
            wrong = [name for name in ("use", "sheet" if self.kind == "csv" else "encoding") if name in given]
            wrong += ["delimiter"] if self.kind == "xlsx" and "delimiter" in given else []
            if not self.question_column:
                raise ValueError(f"{self.kind} 来源必须写 question_column（问题所在列的列名）")
        if wrong:
            raise ValueError(f"选项 {', '.join(wrong)} 不适用于 kind: {self.kind}")
        return self


class DataSection(_Section):
    train_file: str = Field("../data/faq_train.jsonl",
                            description="训练集：对话 JSONL，每行一个 messages 列表；相对路径从本文件所在文件夹算")
    eval_file: str | None = Field("../data/faq_test.jsonl", description="验证集 JSONL，训练中算验证 loss；null：不验证")
    max_samples: int | None = Field(None, ge=1, description="只用前 N 条训练数据（例如 40，跑得更快）；null：全部")
    # Only `llmcourse data build` reads the fields below (see llmcourse.data.build).
    test_file: str | None = Field(None, description="测试集 JSONL（llmcourse data build 写出）")
    scenario: Literal["faq", "intent", "domain_qa"] = Field(
        "faq", description="业务场景：faq = 客服问答，intent = 意图分类，domain_qa = 垂直领域问答")
    raw_dir: str | None = Field(None, description="业务方交付的原始文件所在的文件夹；只读，不改")
    sources: list[DataSource] = Field([], description="原始文件列表（llmcourse data build 读取）；*_column 写文件自己的列名")
    built_dir: str | None = Field(None, description="构建结果：rejected.jsonl、data_report.json / .md、length_hist.png")
    system_prompt: str | None = Field(None, description="每条数据的第一条消息（system）；{labels} 换成 data.labels")
    labels: list[str] | None = Field(None, description="intent 场景允许的标签；别的标签的行会被剔除")
    val_ratio: float = Field(0.1, ge=0.0, lt=0.5, description="验证集比例，按知识分组取整")
    test_ratio: float = Field(0.2, ge=0.0, lt=0.5, description="测试集比例，按知识分组取整；每条知识至少留一行在训练集")
    split_seed: int = Field(42, description="划分训练 / 验证 / 测试集的随机种子")
    min_chars: int = Field(4, ge=1, le=10000, description="问题短于这么多字就丢弃（如“在吗”“好的”）")
    max_chars: int = Field(200, ge=1, le=100000, description="问题或答案长于这么多字就丢弃")
    mask_pii: bool = Field(True, description="手机号、邮箱、身份证号、银行卡号换成 [手机号] [邮箱] [身份证号] [银行卡号]")
    near_duplicate_threshold: float = Field(0.85, gt=0.0, le=1.0,
                                            description="两个问题的相似度（0-1）达到它就算重复，只留一条")

    def filled_system_prompt(self) -> str | None:
        """``system_prompt`` with ``{labels}`` replaced: what the built rows (and the API) use."""
        if not self.system_prompt:
            return None
        return self.system_prompt.replace("{labels}", "、".join(self.labels or []))


class LoraSection(_Section):
    """Field names of ``peft.LoraConfig``."""

    r: int = Field(16, ge=1, le=512, title="LoRA 秩 r", json_schema_extra={"suggested": [4, 8, 16, 32, 64]},
                   description="LoRA 的秩：更新矩阵的容量，越大可训练的参数越多")
    lora_alpha: int = Field(32, ge=1, le=2048, title="lora_alpha",
                            description="缩放系数：LoRA 的更新乘以 lora_alpha / r；常取 2 × r")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, title="lora_dropout",
                                description="LoRA 分支上的 dropout 比例，防过拟合")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="给哪些层加 LoRA，例如 [q_proj, v_proj]；all-linear：所有线性层；null：注意力与 MLP 的投影层")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="训练哪些偏置项；none：不训练")
    use_rslora: bool = Field(False, description="true：rsLoRA，缩放改为 lora_alpha / √r，秩大时更稳")


class TrainSection(_Section):
    """Field names of ``trl.SFTConfig`` plus ``engine`` and ``num_threads``."""

    engine: Literal["auto", "unsloth", "trl"] = Field(
        "auto", description="训练用的库：unsloth = Unsloth，trl = PEFT + TRL；auto：装了 Unsloth 就用它，否则 trl")
    output_dir: str = Field("runs/day1", description="训练结果的文件夹：adapter/、train_log.jsonl、config.yaml、env.json")
    max_steps: int = Field(60, ge=-1, le=100000, title="步数 max_steps",
                           description="训练多少步（优化器更新的次数）；-1：按 num_train_epochs")
    num_train_epochs: float = Field(1.0, gt=0, le=100, title="轮数 epochs",
                                    description="把训练集过几遍（max_steps 为 -1 时才生效）")
    per_device_train_batch_size: int = Field(4, ge=1, le=1024, description="每步每个设备一次算多少条样本（批大小）")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024,
                                             description="累积几次梯度才更新一次；等效批大小 = 批大小 × 累积次数")
    learning_rate: float = Field(1e-3, gt=0, le=1.0, title="学习率",
                                 json_schema_extra={"suggested": [5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3]},
                                 description="学习率：每步更新的幅度；小模型上的 LoRA 能承受较高的学习率")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="学习率在训练中怎样变化")
    warmup_steps: int = Field(0, ge=0, description="开头多少步把学习率从 0 升到 learning_rate")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="权重衰减（AdamW），防过拟合")
    max_length: int = Field(256, ge=16, le=32768, title="最大长度", json_schema_extra={"suggested": [128, 256, 512, 1024]},
                            description="每条样本最多多少 token，超出的截断")
    assistant_only_loss: bool = Field(
        True, description="true：只在回答的 token 上算 loss（Unsloth：train_on_responses_only；TRL：prompt/completion 行与 "
                          "completion_only_loss）；不是 TRL 的同名字段，那个要求模板里有 {% generation %}")
    gradient_checkpointing: bool | None = Field(None, description="用计算换显存；null：GPU 上开，CPU 上关")
    padding_free: bool | None = Field(None, description="把行拼在一起、不补齐；null：CPU 上的 Unsloth 开，其余关")
    logging_steps: int = Field(1, ge=1, description="每多少步记一次 loss（train_log.jsonl）")
    # see llmcourse.training.run.eval_interval
    eval_steps: int | None = Field(
        None, ge=0, description="每多少步在 data.eval_file 的固定 8 行上算一次验证 loss；null：每次训练约 4 次（至少相隔 4 步），0：不算")
    save_steps: int = Field(20, ge=1, description="每多少步存一个检查点（--resume 从它续训）")
    save_total_limit: int | None = Field(2, ge=1, description="最多保留几个检查点；null：全留")
    seed: int = Field(42, description="随机种子：种子相同，结果可复现")
    optim: str = Field("adamw_torch", description="优化器（transformers 的 optim 名字）")
    num_threads: int | None = Field(None, ge=1, le=256, description="CPU 上 torch 用几个线程；null：全部核心")
    torch_compile: bool | None = Field(
        None, description="用 torch.compile 编译模型（首次约 30-45 秒）；null：CPU 上的 Unsloth 训练至少 200 步时开，其余关")


class InferSection(_Section):
    """Field names of vLLM ``SamplingParams`` / ``LLM``."""

    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="推理引擎；auto：有 GPU 且装了 vLLM 就用 vllm，否则 transformers")
    max_tokens: int = Field(64, ge=1, le=32768, description="每个回答最多生成多少 token（SamplingParams.max_tokens）")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="采样温度；0：每次取概率最高的词，结果可复现")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="核采样：只在累计概率达到 top_p 的词里采样")
    batch_size: int = Field(8, ge=1, le=1024, description="一次生成多少个问题的回答")
    max_lora_rank: int | None = Field(None, ge=1, description="vLLM 的 max_lora_rank，至少是 lora.r；null：取 lora.r")
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0, description="vLLM 最多占用多少比例的 GPU 显存")
    max_model_len: int | None = Field(None, ge=32, description="vLLM 的 max_model_len：提示 + 回答的 token 上限；null：模型默认")


class ServeSection(_Section):
    """Options of ``vllm serve`` (and of our FastAPI fallback where no Python has vLLM)."""

    host: str = Field("127.0.0.1", description="监听地址；127.0.0.1：只有本机能访问")
    port: int = Field(8000, ge=1, le=65535, description="监听端口")
    api_key: str | None = Field(None, description="客户端必须带的 API 密钥；null：取环境变量 LLMCOURSE_API_KEY")
    served_model_name: str = Field("course-lora", description="API 里的模型名（请求的 model 字段；vllm serve --served-model-name）")
    max_lora_rank: int | None = Field(None, ge=1, description="vllm serve --max-lora-rank，至少是 lora.r；null：取 lora.r")
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="服务引擎；auto：找得到 vLLM 就用 vllm（CPU 上是 make setup 建的 .venv-vllm），否则课程自带的 transformers 小服务")
    adapter_dir: str | None = Field(None, description="要加载的 LoRA 适配器；null：<train.output_dir>/adapter")
    use_adapter: bool = Field(True, description="false：只用基座模型（对比基座与微调）")
    max_model_len: int = Field(2048, ge=32, le=131072, description="一个请求的提示 + 回答最多多少 token（--max-model-len）")
    max_tokens: int = Field(256, ge=1, le=32768, description="一个请求最多能要多少 max_tokens")
    system_prompt: str | None = Field(None, description="请求没带 system 消息时加上的；null：用 data.system_prompt")
    max_batch: int = Field(8, ge=1, le=256, description="CPU 服务：一次 generate 同时回答多少个请求")


class CourseConfig(_Section):
    model: ModelSection = Field(ModelSection(), description="基座模型：哪个模型、从哪里加载、设备与精度")
    data: DataSection = Field(DataSection(), description="数据：训练用的对话 JSONL；llmcourse data build 的原始文件与清洗规则")
    lora: LoraSection = Field(LoraSection(), description="LoRA 适配器：字段就是 peft.LoraConfig 的参数")
    train: TrainSection = Field(TrainSection(), description="训练：字段就是 trl.SFTConfig 的参数（另加 engine、num_threads）")
    infer: InferSection = Field(InferSection(), description="推理：vLLM SamplingParams / LLM 的参数")
    serve: ServeSection = Field(ServeSection(), description="API 服务：vllm serve 的选项（没有 vLLM 时，课程自带的小服务读同样的字段）")
    # Where this config came from: the YAML file and the overrides applied on top of it. Not part of the
    # YAML; training records it in env.json ("launch") so a grader can tell which config file a run is of.
    _origin: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Two configs are equal when their values are: where each was loaded from (_origin) does not count.
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # as pydantic's BaseModel: a mutable config is not hashable

    @property
    def origin(self) -> dict[str, Any]:
        """``{"config_file": ..., "overrides": {"train.max_steps": 8, ...}}`` (empty when built from a dict)."""
        return dict(self._origin)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path


PATH_FIELDS = {("data", "train_file"), ("data", "eval_file"), ("train", "output_dir"), ("model", "path"),
               ("data", "test_file"), ("data", "raw_dir"), ("data", "built_dir"),
               ("serve", "adapter_dir")}

# Names learners bring from other tools, mapped to ours (which are PEFT's and TRL's).
COMMON_MISNAMES = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "lr": "learning_rate",
                   "steps": "max_steps", "epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size",
                   "max_seq_len": "max_length", "model_name": "name", "max_new_tokens": "max_tokens"}

_ALLOWED_BY_ERROR = {
    "greater_than": "必须大于 {gt}",
    "greater_than_equal": "必须大于或等于 {ge}",
    "less_than": "必须小于 {lt}",
    "less_than_equal": "必须小于或等于 {le}",
    "int_type": "必须是整数",
    "int_parsing": "必须是整数",
    "int_from_float": "必须是整数（不能有小数部分）",
    "float_type": "必须是数字",
    "float_parsing": "必须是数字",
    "bool_type": "必须是 true 或 false",
    "bool_parsing": "必须是 true 或 false",
    "string_type": "必须是文字（字符串）",
    "list_type": "必须是列表，例如 [q_proj, v_proj]",
    "dict_type": "必须是一个段落（键: 值）",
    "model_type": "必须是一个段落（键: 值）",
    "missing": "缺少这个必填字段",
}


def _model_inside(annotation: Any) -> type[BaseModel] | None:
    """The model in ``Model`` or ``list[Model]`` (data.sources), else None."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _locate(location: list[str]) -> tuple[str, type[BaseModel]]:
    """Field name of an error (``data.sources[0].kind``) and the model that holds its last part."""
    model: type[BaseModel] | None = CourseConfig
    owner, parts = CourseConfig, []
    for part in location:
        if model is None:
            break
        if part.isdigit() and parts:  # an item of a list of models
            parts[-1] += f"[{part}]"
            continue
        owner = model
        parts.append(part)
        model = _model_inside(model.model_fields[part].annotation) if part in model.model_fields else None
    return ".".join(parts), owner


def _describe_error(error: dict[str, Any], sections: dict[str, type[BaseModel]]) -> str:
    location = [str(part) for part in error["loc"] if not str(part).startswith(("list[", "literal["))]
    field, owner = _locate(location)
    value = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        name = field.rpartition(".")[2]
        known = list(owner.model_fields)
        guess = [COMMON_MISNAMES[name]] if COMMON_MISNAMES.get(name) in known \
            else difflib.get_close_matches(name, known, n=1)
        hint = f"，是不是想写 '{guess[0]}'？" if guess else ""
        return f"未知字段 '{field}'{hint} 允许的字段：{', '.join(known)}"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"字段 '{field}' 的值 {value!r} 不被允许；可选值：{allowed}"
    if kind == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        if "unknown model" in message:
            return f"字段 '{field}' 的值 {value!r} 不是已知模型；可选值：{' | '.join(MODEL_NAMES)}"
        return f"字段 '{field}' 的值 {value!r} 无效：{message}"
    template = _ALLOWED_BY_ERROR.get(kind)
    allowed = template.format(**error.get("ctx", {})) if template else error["msg"]
    return f"字段 '{field}' 的值 {value!r} 无效：{allowed}"


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.field=value`` and parse the value as YAML (``8`` -> 8, ``[a, b]`` -> list)."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"覆盖参数 {text!r} 格式不对：应写成 段落.字段=值，例如 lora.r=8")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(f"覆盖参数 {text!r} 的值无法解析：{exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"找不到配置文件：{path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: 不是 UTF-8 编码（第 {exc.start} 字节附近）；请另存为 UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML 语法错误：{getattr(exc, 'problem', exc)}") from None
    except (ValueError, RecursionError) as exc:  # PyYAML builds dates like 2001-13-01 and fails on them
        raise ConfigError(f"{path}: 有一个值无法解析（{exc}）；像日期的文字请加引号，例如 \"2001-13-01\"") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: 顶层必须是段落（model: / data: / lora: / train: / infer: / serve:）")
    return raw


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def build_config(raw: dict[str, Any], overrides: dict[str, Any] | None = None,
                 base_dir: Path | None = None, source: str = "配置") -> CourseConfig:
    """Validate a dict (as read from YAML) plus dotted overrides into a :class:`CourseConfig`."""
    data = {section: dict(values or {}) if isinstance(values, dict) else values
            for section, values in raw.items()}
    base_dir = base_dir or Path.cwd()
    for section, field in PATH_FIELDS:
        if isinstance(data.get(section), dict) and field in data[section]:
            data[section][field] = _absolute(data[section][field], base_dir)
    for key, value in (overrides or {}).items():
        section, _, field = key.partition(".")
        if not field:
            raise ConfigError(f"覆盖参数 '{key}' 必须写成 段落.字段，例如 lora.r")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{source}: '{section}' 必须是段落")
        target[field] = _absolute(value, Path.cwd()) if (section, field) in PATH_FIELDS else value
    # Defaults hold relative paths: make them absolute against the config's folder too.
    defaults = CourseConfig().to_dict()
    for section, field in PATH_FIELDS:
        if isinstance(data.get(section, {}), dict) and field not in data.get(section, {}):
            default = defaults[section][field]
            if default:
                data.setdefault(section, {})[field] = _absolute(default, base_dir)
    try:
        cfg = CourseConfig.model_validate(data)
    except ValidationError as exc:
        sections = {name: info.annotation for name, info in CourseConfig.model_fields.items()}
        problems = [_describe_error(err, sections) for err in exc.errors()]
        raise ConfigError(f"{source} 有 {len(problems)} 处问题：\n  - " + "\n  - ".join(problems)) from None
    cfg._origin = {"config_file": source if source != "配置" else None,
                   "overrides": {key: str(value) if isinstance(value, Path) else value
                                 for key, value in (overrides or {}).items()}}
    return cfg


def load_config(path: str | Path, **overrides: Any) -> CourseConfig:
    """Read a YAML config, apply ``section.field`` overrides and validate everything."""
    path = Path(path).expanduser().resolve()
    return build_config(_read_yaml(path), overrides, base_dir=path.parent, source=str(path))


def load_config_with_cli_overrides(path: str | Path, overrides: list[str]) -> CourseConfig:
    """Like :func:`load_config` with overrides written as ``section.field=value`` strings."""
    return load_config(path, **dict(parse_override(item) for item in overrides))
