# The two commands the README starts with:
#   make demo   installs what is missing, starts the stack, runs the demo
#   make test   installs what is missing, starts the stack, runs the whole test suite, stops the stack
.PHONY: demo test deps build

CARGO ?= cargo
POLYREPL := target/debug/polyrepl

deps:
	scripts/install-deps

build:
	$(CARGO) build --workspace --bins

demo: deps build
	$(POLYREPL) demo $(DEMO_ARGS)

test: deps
	scripts/test-all
