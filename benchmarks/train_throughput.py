"""Training throughput, utilisation and peak memory per engine, side by side on the same data.

Usage:  .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--levers] [--rounds 1]

Runs, each in its own process so that its peak RSS is its own:

  trl-defaults   TRL's quick-start with TRL's defaults (.venv-trl; benchmarks/plain_trl_defaults.py)
  trl            our settings on plain PEFT + TRL (.venv-trl)
  unsloth        our default engine and settings (.venv)
  --levers adds  the default engine with one setting changed each (padding, precision, Unsloth's own
                 LM head instead of llmcourse.training.lm_head, threads, batch 8 over the same rows,
                 train.torch_compile=true: what runs of 200+ steps get by default), to show what each
                 default is worth

Every run trains one epoch over the same ``steps x batch`` rows of the Day 1 data (same seed, so the
same batches), so every engine learns from the same answers. Figures:

* answer tokens/s: answer tokens (those with a label, counted from our engine's batches) / the
  training seconds = steps x the median step time (model loading excluded; the median keeps bursts
  of other jobs on a shared machine out; the plain first-to-last time is ``seconds`` in the JSON);
* peak RSS of the process (sampled every 0.2 s);
* utilisation: the FLOPs the step needs / (training seconds x the machine's fp32 matmul FLOP/s).

Needed FLOPs, per training run (forward + backward; the base is frozen, so no base weight gradients)::

    real tokens   x (4 N + 6 L)                   N: weights of the decoder layers' linear layers
                                                  (the embedding is a lookup), L: LoRA weights;
                                                  forward 2N, gradient w.r.t. the activations 2N,
                                                  LoRA forward 2L + activation and weight gradients 4L
  + real tokens   x layers x 3 x 4 q_dim (l+1)/2  attention scores and values (causal), forward + 2x
                                                  backward, l = mean row length
  + answer tokens x 4 V d                         LM head only where a label is: logits 2Vd and their
                                                  gradient w.r.t. the hidden state 2Vd (tied, frozen)

Padding, logits nobody's loss uses and recomputation (gradient checkpointing) are work, not need.
The fp32 matmul FLOP/s is the best ``torch.matmul`` rate at this step's own shapes (rows = tokens
per step against each projection, answer rows against the LM head) on the same number of threads,
measured before and after the runs (the best of both). Where the CPU has native bf16 the bf16 rate is
measured too, and runs that compute in bf16 are also given against it.

Other jobs on a shared machine take wall-clock time, not CPU time, so each run's CPU seconds per step
(end of step 1 to the last step) are measured too, and utilisation is also given as needed FLOPs /
(CPU seconds x the 1-thread fp32 matmul rate). Before the runs the machine's CPU use is sampled for
3 s: when other jobs use more than 30 % of it, the runs are made with idle threads sleeping
(``OMP_WAIT_POLICY=PASSIVE``, so CPU time counts work, not spinning) and the goals are judged on the
CPU-time figures; otherwise the runs keep OpenMP's default (threads spin briefly between operations,
as in a learner's run) and the goals are judged on wall clock. Both are printed and kept in the JSON.
The last line is ``RESULT {json}`` for ``make bench`` (benchmarks/run_all.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
WAIT_POLICY: dict[str, str] = {}  # {"OMP_WAIT_POLICY": "PASSIVE"} on a busy machine: see the docstring
CONFIG = ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"
PYTHONS = {"unsloth": ROOT / ".venv" / "bin" / "python", "trl": ROOT / ".venv-trl" / "bin" / "python"}
# name -> (engine, overrides): each changes one default of our engine
def levers(steps: int) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    """name -> (engine, overrides, environment): the default engine with one default changed."""
    return {"unsloth padded": ("unsloth", ["train.padding_free=false"], {}),
            "unsloth fp32": ("unsloth", ["model.dtype=float32"], {}),
            "unsloth bf16": ("unsloth", ["model.dtype=bfloat16"], {}),
            "unsloth Unsloth head": ("unsloth", [], {"LLMCOURSE_LEAN_LM_HEAD": "0"}),
            "unsloth 1 thread": ("unsloth", ["train.num_threads=1"], {}),
            # the same rows in half the steps
            "unsloth batch 8": ("unsloth", ["train.per_device_train_batch_size=8", f"train.max_steps={steps // 2}"], {}),
            # torch.compile (Inductor C++) of each decoder layer: the default for runs of 200+ steps
            "unsloth compiled": ("unsloth", ["train.torch_compile=true"], {})}


def run_sampling(command: list[str], log: Path | None = None, env: dict | None = None) -> tuple[str, float, list[float]]:
    """Run a command, sampling its RSS (and, with ``log``, its CPU time each time a step is logged)
    every 0.2 s; return stdout, the peak RSS in MB and the CPU seconds at each logged step."""
    env = {**os.environ, **WAIT_POLICY, **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True, env=env)
        watched, peak, cpu_at_step = psutil.Process(process.pid), 0, []
        while process.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss)
                if log is not None and log.exists():
                    logged = log.read_text().count("\n")
                    if logged > len(cpu_at_step):
                        times = watched.cpu_times()
                        cpu_at_step += [times.user + times.system] * (logged - len(cpu_at_step))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        out.seek(0), err.seek(0)
        if process.wait() != 0:
            raise RuntimeError(f"failed: {' '.join(command)}\n{err.read()[-3000:]}")
        return out.read(), peak / 2**20, cpu_at_step


def cpu_per_step(cpu_at_step: list[float]) -> float | None:
    """CPU seconds per step from the end of step 1 to the end of the last step (warm-up excluded)."""
    return (cpu_at_step[-1] - cpu_at_step[0]) / (len(cpu_at_step) - 1) if len(cpu_at_step) > 2 else None


def bench_engine(name: str, engine: str, overrides: list[str], steps: int, rows: int, env: dict | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
    command = [str(PYTHONS[engine]), "-m", "llmcourse.cli", "train", str(CONFIG), f"train.engine={engine}",
               f"train.max_steps={steps}", f"data.max_samples={rows}", f"train.output_dir={out}",
               "train.logging_steps=1", f"train.save_steps={steps * 10}", *overrides]
    _, peak, cpu_at_step = run_sampling(command, out / "train_log.jsonl", env)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    dtype = compute_dtype(overrides)
    ends = [0.0] + [row["elapsed_s"] for row in log]
    return {"name": name, "engine": engine, "overrides": overrides, "seconds": log[-1]["elapsed_s"],
            "median_step_s": statistics.median([b - a for a, b in itertools.pairwise(ends)]),
            "cpu_s_per_step": cpu_per_step(cpu_at_step), "first_step_s": log[0]["elapsed_s"],
            "steps": log[-1]["step"], "real_tokens": log[-1].get("real_tokens_seen"),
            "answer_tokens": log[-1].get("answer_tokens_seen"), "dtype": dtype,
            "peak_rss_mb": round(peak), "final_loss": log[-1]["loss"]}


def compute_dtype(overrides: list[str]) -> str:
    """What our engine computes in with these overrides on this machine."""
    from llmcourse.config import load_config
    from llmcourse.env.loading import training_dtype

    cfg = load_config(CONFIG, **dict(o.split("=", 1) for o in overrides if o.startswith("model.")))
    dtype = str(training_dtype(cfg, "cpu")).removeprefix("torch.")
    return "bf16" if dtype == "bfloat16" else dtype


def bench_trl_defaults(steps: int, rows: int) -> dict:
    from llmcourse.config import load_config

    config = Path(tempfile.mkdtemp()) / "config.yaml"
    load_config(CONFIG, **{"data.max_samples": rows}).save(config)
    stdout, peak, _ = run_sampling([str(PYTHONS["trl"]), str(ROOT / "benchmarks" / "plain_trl_defaults.py"),
                                     str(config), str(steps)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"name": "trl-defaults", "engine": "trl", "overrides": [], "seconds": result["seconds"],
            "median_step_s": statistics.median(result["step_seconds"]),
            "cpu_s_per_step": cpu_per_step(result["cpu_seconds"]),
            "steps": result["steps"], "real_tokens": result["real_tokens"], "answer_tokens": None,
            "loss_tokens": result["loss_tokens"], "dtype": "bf16 autocast" if result["bf16"] else "float32",
            "gradient_checkpointing": result["gradient_checkpointing"], "peak_rss_mb": round(peak),
            "final_loss": None}


def matmul_rate(shapes: list[tuple[int, int, int]], dtype: str, threads: int | None) -> float:
    """Best FLOP/s of torch.matmul over ``shapes`` ((rows, inner, out)) in ``dtype``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    best = 0.0
    for rows, inner, cols in shapes:
        a = torch.randn(rows, inner, dtype=getattr(torch, dtype))
        b = torch.randn(inner, cols, dtype=getattr(torch, dtype))
        a @ b  # first call: allocation, kernel selection
        for _ in range(5):
            started = time.perf_counter()
            a @ b
            best = max(best, 2 * rows * inner * cols / (time.perf_counter() - started))
    return best


def needed_flops(spec, lora_r: int, target_modules, real_tokens: int, answer_tokens: int, rows: int) -> float:
    """The formula of the module docstring."""
    shape = spec.shape
    linear = shape.num_hidden_layers * sum(i * o for i, o in shape.linear_shapes().values())
    lora = shape.lora_parameter_count(lora_r, list(target_modules))
    mean_length = real_tokens / rows
    attention = shape.num_hidden_layers * 3 * 4 * shape.q_dim * (mean_length + 1) / 2
    return real_tokens * (4 * linear + 6 * lora + attention) + answer_tokens * 4 * shape.vocab_size * shape.hidden_size


def show(value, form: str) -> str:
    return "—" if value is None else format(value, form)


def main() -> None:
    from llmcourse.config import load_config
    from llmcourse.env.lane import cpu_has_native_bf16
    from llmcourse.env.models import get_model
    from llmcourse.training.run import COMPILE_MIN_STEPS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--levers", action="store_true", help="also run the default engine with each default changed")
    parser.add_argument("--rounds", type=int, default=1, help="run everything this many times, keep each one's best")
    args = parser.parse_args()
    cfg = load_config(CONFIG)
    spec, batch = get_model(cfg.model.name), cfg.train.per_device_train_batch_size
    rows = args.steps * batch
    load_start = os.getloadavg()[0]
    others_cpu = psutil.cpu_percent(interval=3)  # other jobs' share of the machine right now
    busy = others_cpu > 30  # then the CPU-time figures decide (wall clock is other jobs' too)
    if busy:
        WAIT_POLICY["OMP_WAIT_POLICY"] = "PASSIVE"
    default_dtype = compute_dtype([])

    plan = [("trl-defaults", "trl", [], {}), ("trl", "trl", [], {}), ("unsloth", "unsloth", [], {})]
    if args.levers:  # a lever that equals the default (e.g. bf16 where bf16 is the default) is left out
        plan += [(name, *lever) for name, lever in levers(args.steps).items()
                 if not (lever[1] and lever[1][0].startswith("model.dtype") and compute_dtype(lever[1]) == default_dtype)]
    h, v = spec.shape.hidden_size, spec.shape.vocab_size

    def measure_matmul(tokens_per_step: int, answers_per_step: int) -> dict:
        shapes = [(tokens_per_step, i, o) for i, o in spec.shape.linear_shapes().values()]
        shapes.append((answers_per_step, h, v))
        rates = {"float32": matmul_rate(shapes, "float32", cfg.train.num_threads),
                 "bfloat16": matmul_rate(shapes, "bfloat16", cfg.train.num_threads) if cpu_has_native_bf16() else None}
        rates["float32_1_thread"] = matmul_rate(shapes, "float32", 1)
        rates["bfloat16_1_thread"] = matmul_rate(shapes, "bfloat16", 1) if cpu_has_native_bf16() else None
        import torch
        torch.set_num_threads(cfg.train.num_threads or os.cpu_count())
        return rates

    measured = [measure_matmul(60 * batch, 22 * batch)]  # before: typical Day 1 rows; after: this run's own
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, engine, overrides, env in plan:
            print(f"training: {name} {' '.join(overrides)} {' '.join(f'{k}={v}' for k, v in env.items())}", flush=True)
            try:
                run = bench_trl_defaults(args.steps, rows) if name == "trl-defaults" \
                    else bench_engine(name, engine, overrides, args.steps, rows, env)
            except (RuntimeError, OSError, KeyError, IndexError, json.JSONDecodeError) as exc:
                print(f"  {name} failed: {str(exc)[-1500:]}", flush=True)
                continue
            run["training_s"] = round(run["median_step_s"] * run["steps"], 2)
            run["training_cpu_s"] = round(run["cpu_s_per_step"] * run["steps"], 2) if run["cpu_s_per_step"] else None
            if name not in best or run["training_s"] < best[name]["training_s"]:
                best[name] = run
    reference = best.get("unsloth")
    if reference is None or not reference.get("answer_tokens"):
        sys.exit("the default engine (unsloth) did not run: no figures")
    measured.append(measure_matmul(reference["real_tokens"] // args.steps, reference["answer_tokens"] // args.steps))
    peak = {key: max(m[key] or 0 for m in measured) or None for key in measured[0]}

    flops = needed_flops(spec, cfg.lora.r, cfg.lora.target_modules or spec.target_modules,
                         reference["real_tokens"], reference["answer_tokens"], rows)
    per_step = flops / args.steps
    base = best.get("trl-defaults")
    load_end = os.getloadavg()[0]
    print(f"\nLoRA training, {cfg.model.name}, batch {batch}, {args.steps} steps = one epoch over {rows} rows "
          f"(CPU, {os.cpu_count()} cores, load average {load_start:.1f} -> {load_end:.1f}, other jobs "
          f"{others_cpu:.0f} % of the CPU before the runs, OMP_WAIT_POLICY {WAIT_POLICY.get('OMP_WAIT_POLICY', 'default')})")
    print(f"answer tokens {reference['answer_tokens']}, real tokens {reference['real_tokens']}, needed "
          f"{per_step / 1e9:.1f} GFLOP per step; matmul rate fp32 {peak['float32'] / 1e9:.0f} GFLOP/s "
          f"({peak['float32_1_thread'] / 1e9:.0f} on 1 thread)"
          + (f", bf16 {peak['bfloat16'] / 1e9:.0f} ({peak['bfloat16_1_thread'] / 1e9:.0f})" if peak["bfloat16"] else ""))
    print("utilisation = needed FLOPs / (seconds x fp32 matmul rate); 'cpu' = needed FLOPs / (CPU seconds x the "
          "1-thread rate), which other jobs on the machine barely move")
    print(f"{'run':<22}{'dtype':<14}{'answer tok/s':>13}{'vs TRL def.':>12}{'CPU s':>11}{'vs TRL (cpu)':>13}"
          f"{'util.':>7}{'util. cpu':>10}{'peak RSS MB':>12}")
    table = []
    for name, run in best.items():
        rate = reference["answer_tokens"] / run["training_s"]
        cpu = run.get("training_cpu_s")  # totals, not per step: a lever may change the number of steps
        row = {**run, "answer_tokens_per_s": round(rate, 1),
               "utilisation_fp32": round(flops / run["training_s"] / peak["float32"], 3),
               "utilisation_fp32_cpu_time": round(flops / cpu / peak["float32_1_thread"], 3) if cpu else None,
               "vs_trl_defaults": round(base["training_s"] / run["training_s"], 2) if base else None,
               "vs_trl_defaults_cpu_time": round(base["training_cpu_s"] / cpu, 2)
               if base and cpu and base.get("training_cpu_s") else None}
        if "bf16" in str(run["dtype"]) and peak["bfloat16"]:
            row["utilisation_bf16"] = round(flops / run["training_s"] / peak["bfloat16"], 3)
            row["utilisation_bf16_cpu_time"] = round(flops / cpu / peak["bfloat16_1_thread"], 3) if cpu else None
        table.append(row)
        print(f"{name:<22}{run['dtype']!s:<14}{rate:>13.1f}{show(row['vs_trl_defaults'], '.2f'):>11}x"
              f"{show(cpu, '.0f'):>11}{show(row['vs_trl_defaults_cpu_time'], '.2f'):>12}x"
              f"{show(row['utilisation_fp32'], '.0%'):>7}{show(row['utilisation_fp32_cpu_time'], '.0%'):>10}"
              f"{run['peak_rss_mb']:>12}")

    ours = next(row for row in table if row["name"] == "unsloth")
    defaults = next((row for row in table if row["name"] == "trl-defaults"), None)

    def judged_figure(row: dict, key: str):
        """The CPU-time form of a figure on a busy machine (where it exists), else the wall-clock one."""
        return row[f"{key}_cpu_time"] if busy and row[f"{key}_cpu_time"] else row[key]

    speedup, utilisation = judged_figure(ours, "vs_trl_defaults"), judged_figure(ours, "utilisation_fp32")
    judged = "CPU time (machine busy)" if busy else "wall clock"
    bf16_note = ""
    if ours.get("utilisation_bf16") is not None:
        bf16_note = (f"; computing in bf16: {ours['utilisation_bf16']:.0%} / {ours['utilisation_bf16_cpu_time'] or 0:.0%} "
                     f"of the bf16 matmul rate")
    goals = [{"what": "LoRA training answer tokens/s, default engine vs plain TRL defaults",
              "value": (f"{ours['answer_tokens_per_s']} vs {defaults['answer_tokens_per_s']} tok/s = "
                        f"{ours['vs_trl_defaults']}x wall, {ours['vs_trl_defaults_cpu_time']}x CPU time; judged on "
                        f"{judged}") if defaults else "TRL defaults did not run",
              "goal": "≥ 2x", "met": bool(defaults) and bool(speedup) and speedup >= 2},
             {"what": f"LoRA training utilisation (needed FLOPs / fp32 matmul FLOP/s), default engine, {args.steps} steps",
              "value": (f"{ours['utilisation_fp32']:.0%} wall, {ours['utilisation_fp32_cpu_time'] or 0:.0%} CPU time "
                        f"({per_step / 1e9:.0f} GFLOP/step needed; fp32 matmul {peak['float32'] / 1e9:.0f} GFLOP/s, "
                        f"{peak['float32_1_thread'] / 1e9:.0f} on 1 thread){bf16_note}; judged on {judged}"),
              "goal": "≥ 50%", "met": bool(utilisation) and utilisation >= 0.5},
             {"what": "LoRA training peak RSS, default engine vs TRL defaults",
              "value": f"{ours['peak_rss_mb']} vs {defaults['peak_rss_mb']} MB" if defaults else "—",
              "goal": "", "met": None}]
    compiled = next((row for row in table if row["name"] == "unsloth compiled"), None)
    if compiled:
        long_util = judged_figure(compiled, "utilisation_fp32")
        goals.append({"what": f"LoRA training utilisation in runs of {COMPILE_MIN_STEPS}+ steps (compiled by default)",
                      "value": (f"{compiled['utilisation_fp32']:.0%} wall, "
                                f"{compiled['utilisation_fp32_cpu_time'] or 0:.0%} CPU time, "
                                f"{compiled['answer_tokens_per_s']} tok/s = {compiled['vs_trl_defaults']}x TRL defaults "
                                f"after a first step of {compiled['first_step_s']:.0f} s (compiling); judged on {judged}"),
                      "goal": "≥ 50%", "met": bool(long_util) and long_util >= 0.5})
    changed = [row for row in table if row["name"].startswith("unsloth ")]
    if changed:
        goals.append({"what": "levers: the default engine with one default changed (CPU s, wall tok/s)",
                      "goal": "", "met": None,
                      "value": "; ".join(f"{row['name']}: {row['training_cpu_s'] or 0:.0f} vs "
                                         f"{ours['training_cpu_s'] or 0:.0f} CPU s, "
                                         f"{row['answer_tokens_per_s']} vs {ours['answer_tokens_per_s']} tok/s"
                                         + (f" (first step {row['first_step_s']:.0f} s)" if "compiled" in row["name"] else "")
                                         for row in changed)})
    result = {"benchmark": "train_throughput", "model": cfg.model.name, "steps": args.steps, "rows": rows,
              "batch": batch, "default_dtype": default_dtype, "needed_gflop_per_step": round(per_step / 1e9, 1),
              "matmul_gflops": {k: round(v / 1e9, 1) if v else None for k, v in peak.items()},
              "judged_on": judged, "others_cpu_percent": others_cpu,
              "omp_wait_policy": WAIT_POLICY.get("OMP_WAIT_POLICY", "default"), "load_average_start": round(load_start, 2), "load_average_end": round(load_end, 2),
              "runs": table, "goals": goals}
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
