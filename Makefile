# Two commands do all the set-up on a fresh machine:
#   make demo   install doppel and find look-alikes of a photo in a folder of photos
#               (the demo set in images/demo, which every clone has)
#   make test   install doppel with its test tools and run the test suite
#   (make test-fast runs only the quick tests: no face model, no large data)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
FACES ?= images/demo
PHOTO ?= $(FACES)/img1.jpg
GALLERY ?= $(FACES)
# Dlib's weights ship in a wheel, so the demo works offline; Facenet512 (the default
# model) needs its weights file: see `doppel models`. The Dlib model brings its own
# pipeline (dlib detector, five-point chips, mirror averaging); DETECTOR=mtcnn or
# another overrides the detector.
MODEL ?= Dlib
DETECTOR ?=
# Debian packages the tests need: a browser for the web page test; a C compiler and
# make to build Citus for the cluster tests.
SYSTEM_PACKAGES := chromium chromium-driver gcc make libc6-dev

.PHONY: install demo test test-fast system lint citus

$(BIN)/doppel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/doppel

demo: install
	$(BIN)/doppel find $(PHOTO) --in $(GALLERY) --model $(MODEL) $(if $(DETECTOR),--detector $(DETECTOR))

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The tests also run `doppel ingest --cluster` on a local Ray: the cluster extra.
$(VENV)/.cluster: $(BIN)/doppel
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	touch $@

# Citus, built once per machine against the embedded server (about a minute to ten;
# cached in ~/.cache/doppel/citus, keyed by the source's hash), for the Citus tests.
citus: install
	$(BIN)/doppel db cluster build --if-compiler

test: install system $(VENV)/.cluster citus
	$(BIN)/pytest

# The quick part of the suite: no face model loads, no large data set is made.
test-fast: install citus
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src
