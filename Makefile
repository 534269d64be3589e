# tfrec: `make run` (train -> evaluate -> export -> verify) and `make test`.
# Both create .venv and install the package first, so each works on a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)

# Offline here: use the shared data sets when they sit beside the checkout;
# elsewhere the loaders download (with checksums) into ~/.cache/tfrec.
ifneq ($(wildcard $(SHARED_DATA)),)
export TFREC_DATA_DIR ?= $(SHARED_DATA)
endif
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED := 1

RUN_DIR ?= runs/neumf-movielens-100k
EPOCHS  ?= 6
USER_ID ?= 1
SEEDS   ?= 0 1 2

.PHONY: install js-tools run test test-slow bench export lint clean loader reproduce-ncf reproduce-content reproduce-gru4rec reproduce-item2vec \
	reproduce-deep reproduce-autoencoders reproduce-wide-deep reproduce-youtube run-youtube

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# The CUDA and cuDNN wheels of the TensorFlow already installed (Linux x86_64),
# pinned to its version so pip does not move TensorFlow; prints the GPUs it sees.
.PHONY: install-gpu
install-gpu: install
	$(BIN)/python -m pip install -q "tensorflow[and-cuda]==$$($(BIN)/python -c \
		'import importlib.metadata as m; print(m.version("tensorflow"))')"
	$(BIN)/python -c "import tensorflow as tf; \
		print('GPUs:', [d.name for d in tf.config.list_physical_devices('GPU')])"

run: install
	rm -rf $(RUN_DIR)
	$(BIN)/tfrec train neumf --dataset movielens-100k --epochs $(EPOCHS) \
		--batch-size 256 --out $(RUN_DIR)
	$(BIN)/tfrec export $(RUN_DIR) --name neumf
	$(BIN)/tfrec recommend --artifact saved_models/neumf --user $(USER_ID) --k 10

# One worker per core, whole files per worker (module fixtures are shared within a
# file): 8.5 min instead of 13.7 on the 2-core CI machine.
test: install js-tools
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-slow: install js-tools   # the long kill loops marked slow
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m slow

# What the Node and browser checks of the ONNX exports need (tests/export/
# test_node_runtime.py, test_browser.py): Debian chromium (the real binary, driven
# by playwright-core; never `npx playwright install`) and the pinned npm packages.
# onnxruntime-node's install script fetches CUDA files from an unreachable host:
# ONNXRUNTIME_NODE_INSTALL=skip (its CPU binaries are bundled).
CHROMIUM := /usr/lib/chromium/chromium

js-tools: js/node_modules/.installed
	test -x $(CHROMIUM) || (apt-get update -q && apt-get install -y -q chromium)
	test -x $(CHROMIUM)

js/node_modules/.installed: js/package.json js/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	cd js && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

export: install
	test -f $(RUN_DIR)/model.keras || $(MAKE) run
	$(BIN)/tfrec export $(RUN_DIR) --name neumf

# TF Serving's load path (C API) check program; the tests build their own cached copy
# (export.tfserving.build_loader), so `make test` does not need this target.
loader: build/tfserving_loader

build/tfserving_loader: export/tfserving/loader.c export/tfserving/__init__.py | install
	$(BIN)/python -m export.tfserving $@

# Benchmarks (scripts/bench.py: one plug-in per section, bench.json + one table);
# bench-quick: the same file at smaller sizes, about two minutes.
.PHONY: bench-quick
bench: install
	$(BIN)/python scripts/bench.py

bench-quick: install
	$(BIN)/python scripts/bench.py --quick

reproduce-ncf: install
	$(BIN)/python scripts/reproduce_ncf.py --only neumf mf --seeds $(SEEDS)
	$(BIN)/python scripts/reproduce_ncf.py --only gmf ncf_mlp neumf_pretrained --seeds 0 --append

# Issue 3: GRU4Rec on the YooChoose and DIGINETICA samples with the official code's
# published settings (about 15 minutes), then item2vec on ML-100K (about 20).
reproduce-gru4rec: install
	$(BIN)/python scripts/reproduce_gru4rec.py --seeds $(SEEDS)

reproduce-item2vec: install
	$(BIN)/python scripts/reproduce_item2vec.py --seeds $(SEEDS)
	$(BIN)/python scripts/reproduce_item2vec.py --seeds 0 --variants skipgram --window 0 \
		--subsample 1e-4 --epochs 5 --no-export --label ", set window (paper)" --append

# Issue 4: autoencoders (AutoRec ML-1M/100K, CDAE vs NeuMF/MF), Wide & Deep (ML-1M CTR,
# ML-100K rating), YouTube DNN + MV-DNN (ML-100K time split). About 1.5 h on 2 cores.
reproduce-deep: reproduce-autoencoders reproduce-wide-deep reproduce-youtube

reproduce-autoencoders: install
	$(BIN)/python scripts/reproduce_autoencoders.py --seeds $(SEEDS)

reproduce-wide-deep: install
	$(BIN)/python scripts/reproduce_wide_deep.py --seeds $(SEEDS)

reproduce-youtube: install
	$(BIN)/python scripts/reproduce_youtube.py --seeds $(SEEDS) --threads 1 --export

# Two-stage YouTube serving: retrieve 100 with the TFRS BruteForce index, drop seen
# items, rank by expected watch time (trains a seed-0 pipeline first if none is exported).
run-youtube: install
	test -d saved_models/youtube || $(BIN)/python scripts/reproduce_youtube.py --seeds 0 \
		--only youtube --export --out runs/youtube-s0 --report runs/youtube-s0/report
	$(BIN)/tfrec recommend --pipeline youtube --artifact saved_models/youtube \
		--user $(USER_ID) --k 10

# Issue 5: VBPR / content CNN on cold-start items, then the six CF + content hybrids
# (ML-100K, about 6 + 16 minutes on 2 cores).
reproduce-content: install
	$(BIN)/python scripts/reproduce_content.py --seeds $(SEEDS)
	$(BIN)/python scripts/reproduce_hybrids.py --seeds $(SEEDS)

lint: install
	$(BIN)/ruff check tfrec export tests scripts

clean:
	rm -rf runs .pytest_cache .ruff_cache build *.egg-info
	find saved_models -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
