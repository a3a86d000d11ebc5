"""Run the course's notebooks end to end with papermill (``make run``, CI).

Usage::

    from llmcourse.course import run_day, CPU_PARAMETERS
    executed = run_day("day1", "outputs", CPU_PARAMETERS["day1"])

``run_day`` copies the day's source folder (notebooks, configs, data) to ``OUT/<day>/``
and executes every notebook there in order, so each run's artifacts land beside its
executed notebook and the repository stays clean.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns("runs", "outputs", ".ipynb_checkpoints", "__pycache__", "*.executed.ipynb",
                              "no_code_submission", "uploads", "my_lora_sft.yaml", "my_cases.jsonl",
                              # Day 3's generated folders and files
                              "built", "run", "loadtest", "verify", "report.md", "conversation.json", "server.log")

# The no-code notebook's summary as a learner would type it (papermill cannot type into the form).
SAMPLE_SUMMARY = (
    "这次无代码微调的目标是让替身模型学会云杉智能家居的客服口径，例如退货期、保修期和客服热线。"
    "数据使用课程提供的客服问答，对话格式，每条事实有多种问法。参数方面，我选择了秩为16的LoRA，"
    "lora_alpha为32，学习率为千分之一，最大长度256。训练过程中进度条逐步前进，loss曲线整体向下，"
    "说明模型在学习回答的写法。由于步数较少，模型还不能记住全部事实，下一步我会增加训练步数，"
    "并补充更多不同问法的样本，再用测试问题比较训练前后的回答，确认关键事实是否被正确说出。"
)

# Small enough for a 2-core CPU and CI, large enough for every check to mean something.
CPU_PARAMETERS = {
    "day1": {"02_lora_training.ipynb": {"max_steps": 60},
             "03_no_code.ipynb": {"auto_start": True, "max_steps": 30, "summary_text": SAMPLE_SUMMARY}},
    "day2": {},
    "day3": {},
}
CI_PARAMETERS = {
    "day1": {"02_lora_training.ipynb": {"max_steps": 8, "max_samples": 32},
             "03_no_code.ipynb": {"auto_start": True, "max_steps": 5, "max_samples": 16, "summary_text": SAMPLE_SUMMARY}},
    "day2": {"01_inference.ipynb": {"max_cases": 6, "max_tokens": 24},
             "02_acceleration.ipynb": {"n_prompts": 8, "max_tokens": 16},
             "04_troubleshooting.ipynb": {"max_steps": 3, "max_samples": 8, "batch_size": 2, "probe_count": 2,
                                          "max_tokens": 12, "memory_batch": 2, "memory_length": 32}},
    "day3": {"02_train.ipynb": {"max_steps": 8, "max_samples": 32, "eval_limit": 4},
             "03_deploy.ipynb": {"max_tokens": 16},
             "04_verify.ipynb": {"max_cases": 6, "max_tokens": 24}},
}
DAYS = ["day1", "day2", "day3"]


def copy_day(day: str, out_dir: str | Path) -> Path:
    target = Path(out_dir) / day
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / day, target, ignore=SKIP)
    return target


def run_day(day: str, out_dir: str | Path, parameters: dict[str, dict] | None = None,
            timeout: int = 1800) -> dict[str, float]:
    """Execute each notebook of a day in a copy under ``out_dir``; return seconds per notebook."""
    import papermill

    folder = copy_day(day, out_dir)
    seconds = {}
    for notebook in sorted(folder.glob("*.ipynb")):
        started = time.perf_counter()
        papermill.execute_notebook(str(notebook), str(notebook.with_suffix(".executed.ipynb")),
                                   parameters=(parameters or {}).get(notebook.name, {}), cwd=str(folder),
                                   execution_timeout=timeout, progress_bar=False)  # kernel: the notebook's own
        seconds[notebook.name] = round(time.perf_counter() - started, 1)
        print(f"{day}/{notebook.name}: {seconds[notebook.name]} s")
    return seconds
