# SwiftPS developer entry points. `make test` is the one test command (README, .ci/run).
SHELL := /bin/bash
SWIFT ?= swift

.PHONY: build release dist dist-check test tsan lint format deps demo bench clean

build:
	$(SWIFT) build --build-tests -Xswiftc -warnings-as-errors

release:
	$(SWIFT) build -c release -Xswiftc -warnings-as-errors

# Self-contained binaries for a Debian host that has only OpenBLAS, zlib and OpenSSL (libopenblas0-pthread, zlib1g,
# libssl3):
# psserver, psworker and psctl linked with --static-swift-stdlib (Swift runtime, Foundation and Dispatch inside),
# plus the PSData resource bundle the binaries find beside themselves, in dist/. `make dist-check` (also
# .ci/dist-check) proves it: no toolchain library in `ldd`, and every binary runs with the toolchain hidden.
DIST_SCRATCH := .build-dist
DIST_DIR := dist
# Warnings are errors here as in every build; cluster/Dockerfile, whose toolchain release may differ, clears it.
DIST_SWIFTFLAGS ?= -Xswiftc -warnings-as-errors

dist:
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH) $(DIST_SWIFTFLAGS) \
	  --product psserver
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH) $(DIST_SWIFTFLAGS) \
	  --product psworker
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH) $(DIST_SWIFTFLAGS) \
	  --product psctl
	rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	bin="$$($(SWIFT) build -c release --static-swift-stdlib --scratch-path $(DIST_SCRATCH) --show-bin-path)" \
	  && cp "$$bin/psserver" "$$bin/psworker" "$$bin/psctl" $(DIST_DIR)/ \
	  && cp -R "$$bin/SwiftPS_PSData.resources" $(DIST_DIR)/
	@echo "dist: $$(ls $(DIST_DIR) | tr '\n' ' ')"

dist-check: dist
	.ci/dist-check $(DIST_DIR)

# Builds everything (warnings are errors), then runs the whole suite. Long soak/benchmark tests are gated
# behind PS_SOAK=1; namespace tests run only as root.
test: build
	$(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test-output.txt; exit $${PIPESTATUS[0]}

# ThreadSanitizer: builds everything sanitized in its own scratch path, then runs the whole suite from that build.
# Multi-process tests launch the sanitized psserver/psworker/psctl next to the test bundle. Any report fails the
# run: in the test process through its exit code (66 at exit), in a child through the test that ran it
# (ChildProcess fails it, quoting the report). PS_TSAN=1 makes ThreadSanitizerTests require that the probe's
# deliberate race is reported, so a build that silently lost the sanitizer fails too.
TSAN_SCRATCH := .build-tsan
TSAN_OPTIONS_RUN := halt_on_error=0 exitcode=66 second_deadlock_stack=1

tsan:
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH) -Xswiftc -warnings-as-errors
	PS_TSAN=1 TSAN_OPTIONS="$(TSAN_OPTIONS_RUN)" $(SWIFT) test --skip-build --sanitize=thread \
	  --scratch-path $(TSAN_SCRATCH) --disable-swift-testing 2>&1 | tee $(TSAN_SCRATCH)/test-output.txt; \
	  exit $${PIPESTATUS[0]}

lint:
	$(SWIFT) format lint --strict -r Sources Tests Package.swift

format:
	$(SWIFT) format format -i -r Sources Tests Package.swift

# Installs the system packages when missing (as root; otherwise prints the command), builds, runs the demo.
demo: deps release
	.build/release/psctl demo

deps:
	@if ! pkg-config --exists openblas 2>/dev/null || [ ! -e /usr/include/zlib.h ] \
	    || ! pkg-config --exists openssl 2>/dev/null || [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && apt-get install -y libopenblas-dev zlib1g-dev libssl-dev pkg-config \
	      && (apt-get install -y dataset-fashion-mnist || echo "Fashion-MNIST unavailable; the demo uses digits"); \
	  elif ! pkg-config --exists openblas 2>/dev/null || [ ! -e /usr/include/zlib.h ] \
	      || ! pkg-config --exists openssl 2>/dev/null; then \
	    echo "Missing system packages. Run: sudo apt-get install -y libopenblas-dev zlib1g-dev libssl-dev pkg-config dataset-fashion-mnist"; \
	    exit 1; \
	  else \
	    echo "Note: sudo apt-get install -y dataset-fashion-mnist gives the demo Fashion-MNIST (using digits now)."; \
	  fi; \
	fi

bench: release
	.build/release/psbench all

clean:
	rm -rf .build $(TSAN_SCRATCH)
