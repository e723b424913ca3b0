# Two commands: `make run` (the todo example on :3000) and `make test` (the whole suite, as CI runs it).
# Everything the tests need is installed here: Python deps in .venv, the npm Motia clients, Surge's
# own TypeScript client (clients/js, built with tsc), the todo web app (examples/todo/web, built
# with Vite on that client, served by Surge at /) and Debian's Chromium.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := tests/compat/node_modules/.installed
PORT ?= 3000
# Surge's TypeScript client and React hooks (@surge/stream-client): the web apps link it.
CLIENT_JS := clients/js
CLIENT_JS_DEPS := $(CLIENT_JS)/node_modules/.installed
CLIENT_JS_BUILD := $(CLIENT_JS)/dist/index.js
CLIENT_JS_SOURCES := $(shell find $(CLIENT_JS)/src -type f) $(CLIENT_JS)/tsconfig.json
WEB := examples/todo/web
WEB_DEPS := $(WEB)/node_modules/.installed
# The build's own output is its stamp: rebuilt when a source, the config or the deps change.
WEB_BUILD := $(WEB)/dist/index.html
WEB_SOURCES := $(shell find $(WEB)/src -type f) $(WEB)/index.html $(WEB)/vite.config.ts \
	$(WEB)/tsconfig.json

.PHONY: setup web chromium run test lint bench clean

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

$(NODE_STAMP): tests/compat/package.json tests/compat/package-lock.json
	cd tests/compat && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CLIENT_JS_DEPS): $(CLIENT_JS)/package.json $(CLIENT_JS)/package-lock.json
	cd $(CLIENT_JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CLIENT_JS_BUILD): $(CLIENT_JS_DEPS) $(CLIENT_JS_SOURCES)
	cd $(CLIENT_JS) && npm run --silent build
	touch $@

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUILD): $(WEB_DEPS) $(WEB_SOURCES) $(CLIENT_JS_BUILD)
	cd $(WEB) && npm run --silent build
	touch $@

# --- ai-chat web app (examples/ai-chat/web): the same rules as the todo app's above ----------
AI_CHAT_WEB := examples/ai-chat/web
AI_CHAT_WEB_DEPS := $(AI_CHAT_WEB)/node_modules/.installed
AI_CHAT_WEB_BUILD := $(AI_CHAT_WEB)/dist/index.html
AI_CHAT_WEB_SOURCES := $(shell find $(AI_CHAT_WEB)/src -type f) $(AI_CHAT_WEB)/index.html \
	$(AI_CHAT_WEB)/vite.config.ts $(AI_CHAT_WEB)/tsconfig.json

$(AI_CHAT_WEB_DEPS): $(AI_CHAT_WEB)/package.json $(AI_CHAT_WEB)/package-lock.json
	cd $(AI_CHAT_WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(AI_CHAT_WEB_BUILD): $(AI_CHAT_WEB_DEPS) $(AI_CHAT_WEB_SOURCES) $(CLIENT_JS_BUILD)
	cd $(AI_CHAT_WEB) && npm run --silent build
	touch $@
# --- end of the ai-chat web app --------------------------------------------------------------

# Motia's own React hooks on a page (tests/compat/motia-react), for the browser compat test.
MOTIA_PAGE := tests/compat/motia-react
MOTIA_PAGE_DEPS := $(MOTIA_PAGE)/node_modules/.installed
MOTIA_PAGE_BUILD := $(MOTIA_PAGE)/dist/index.html

$(MOTIA_PAGE_DEPS): $(MOTIA_PAGE)/package.json $(MOTIA_PAGE)/package-lock.json
	cd $(MOTIA_PAGE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(MOTIA_PAGE_BUILD): $(MOTIA_PAGE_DEPS) $(MOTIA_PAGE)/src/main.jsx $(MOTIA_PAGE)/index.html \
		$(MOTIA_PAGE)/vite.config.js
	cd $(MOTIA_PAGE) && npm run --silent build
	touch $@

# The TypeScript client's own tests (node --test) run inside pytest: tests/js_client.
setup: $(PY_STAMP) $(NODE_STAMP) $(CLIENT_JS_DEPS)

# The front ends: todo (examples/todo/web/dist) and ai-chat (examples/ai-chat/web/dist), and the
# compat page on Motia's React hooks (tests/compat/motia-react/dist).
web: $(WEB_BUILD) $(AI_CHAT_WEB_BUILD) $(MOTIA_PAGE_BUILD)

# Debian's Chromium for the browser tests. Where it cannot be installed the tests skip, except
# under CI=true, where this fails.
chromium:
	@scripts/install-chromium.sh || { [ "$${CI:-}" != true ] && \
		echo "make: going on without Chromium: the browser tests will be skipped"; }

run: $(PY_STAMP) web
	cd examples/todo && ../../$(BIN)/surge dev --port $(PORT)

test: setup web chromium lint
	$(BIN)/pytest

lint: $(PY_STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) tests/compat/node_modules .pytest_cache $(WEB)/node_modules $(WEB)/dist test-artifacts
	rm -rf $(CLIENT_JS)/node_modules $(CLIENT_JS)/dist $(CLIENT_JS)/build-test
	rm -rf $(AI_CHAT_WEB)/node_modules $(AI_CHAT_WEB)/dist  # ai-chat web app
	rm -rf $(MOTIA_PAGE)/node_modules $(MOTIA_PAGE)/dist
