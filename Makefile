# Quick start: `make demo`, `make test`. Both run `make install` first.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  pkgs="ffmpeg sox libsox-fmt-mp3 libsndfile1 libchromaprint-tools chromium"; \
	  python3 -c "import venv, ensurepip" 2>/dev/null || pkgs="$$pkgs python3-venv"; \
	  if ! dpkg -s $$pkgs >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs; \
	  fi; \
	else \
	  command -v ffmpeg >/dev/null || { echo "install FFmpeg (apt-get install ffmpeg) first"; exit 1; }; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	# prefigure (via stable-audio-tools) pulls the PyPI `argparse` backport, which shadows the
	# standard library's and breaks Prefect's server; it is not needed on Python 3.
	$(PY) -m pip uninstall -y -q argparse
	$(PY) -m pip check | grep -v "requires argparse, which is not installed" | grep . && exit 1 || true
	touch $@

demo: install
	$(VENV)/bin/curate demo-data $(DEMO_DIR)
	$(VENV)/bin/curate run $(DEMO_DIR)/curate.toml

test: install
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile --durations=15

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
