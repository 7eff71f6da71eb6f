# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# apt needs root; use sudo when we are not root and it is there.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: run test install install-test chromium axe bench clean

run: $(VENV)/.installed
	$(BIN)/homework migrate
	HOMEWORK_VAPID_SUBJECT=$${HOMEWORK_VAPID_SUBJECT:-mailto:demo@homework.example} $(BIN)/homework serve --demo

test: $(VENV)/.installed-test chromium axe
	HOMEWORK_BROWSER_TESTS=required $(BIN)/python -m pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(SUDO) apt-get update && $(SUDO) apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# Debian's Chromium for the browser tests; never a downloaded browser build.
chromium:
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

# axe-core from the npm registry, used only by the accessibility tests.
axe:
	@[ -f node_modules/axe-core/axe.min.js ] || { command -v npm >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y npm; }; npm install --no-save --no-audit --no-fund axe-core@4 >/dev/null; }

bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench.all
	$(BIN)/python -m bench.patient_list
	$(BIN)/python -m bench.reminders

clean:
	rm -rf $(VENV) node_modules
