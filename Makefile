# ferry - thin wrapper over CMake. See README.md.
#   make          build (build/)
#   make test     every test through ctest, plain and under ASan+UBSan
#   make demo     build, start a dev agent, show what ferry does
#   make bench    every benchmark (JSON on stdout)
#   make chaos    the chaos suite in Docker containers
#   make fuzz     libFuzzer targets (clang), a short run each

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build asan test test-plain test-asan test-fuzz demo bench chaos chaos-quick fuzz clean

all: build

deps:
	@deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

test-plain: build
	cd $(BUILD) && ctest --output-on-failure --timeout 900

test-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --output-on-failure --timeout 900

chaos-quick: build
	@bash tests/chaos/ci-quick.sh $(BUILD)

# The fuzz targets build when clang is installed (it is in install-deps) and
# each runs briefly as a smoke test; `make fuzz` runs them longer.
test-fuzz: deps
	@if command -v clang >/dev/null; then \
	    cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON >/dev/null && \
	    cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_targets && \
	    FUZZ_SECONDS=$${FUZZ_SECONDS:-3} bash tests/fuzz/run.sh $(FUZZ_BUILD); \
	else echo "fuzz: SKIPPED: clang is not installed"; fi

test: test-plain test-asan test-fuzz chaos-quick

demo: build
	@bash deploy/demo.sh $(BUILD)

bench: build
	@bench/run all

chaos: build
	@deploy/install-deps.sh --chaos
	python3 tests/chaos/chaos.py --build-dir $(BUILD)

fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)
	@bash tests/fuzz/run.sh $(FUZZ_BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
