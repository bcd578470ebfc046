# SwiftPS developer entry points. `make test` is the one test command (README, .ci/run).
SHELL := /bin/bash
SWIFT ?= swift

.PHONY: build release test lint format demo bench clean

build:
	$(SWIFT) build --build-tests -Xswiftc -warnings-as-errors

release:
	$(SWIFT) build -c release -Xswiftc -warnings-as-errors

# Builds everything (warnings are errors), then runs the whole suite. Long soak/benchmark tests are gated
# behind PS_SOAK=1; namespace tests run only as root.
test: build
	$(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test-output.txt; exit $${PIPESTATUS[0]}

lint:
	$(SWIFT) format lint --strict -r Sources Tests Package.swift

format:
	$(SWIFT) format format -i -r Sources Tests Package.swift

demo: release
	.build/release/psctl demo

bench: release
	.build/release/psbench all

clean:
	rm -rf .build
