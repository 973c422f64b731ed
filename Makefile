# Thin wrapper around meson + ninja.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_SECONDS ?= 600

.PHONY: all deps run check unit integration fuzz bench clean

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

deps:
	bash scripts/deps.sh build

# The main job: build, then show qkit-img at work on a real image.
run: deps all
	bash scripts/demo.sh $(BUILD)

# Every test: unit tests (plain and under ASan+UBSan), integration tests, a short fuzz run.
check: deps
	bash scripts/deps.sh test
	bash tests/run-all.sh

# Unit tests of the plain build only.
unit: deps all
	meson test -C $(BUILD) --print-errorlogs

# Builds, unit and integration tests, without the fuzz run.
integration: deps
	bash scripts/deps.sh test
	QKIT_NO_FUZZ=1 bash tests/run-all.sh

# A long run of the qcow2 image fuzzer (FUZZ_SECONDS); crashes go to build-fuzz/crashes/.
fuzz:
	bash scripts/deps.sh test
	bash scripts/fuzz.sh run fuzz-qcow2-open $(FUZZ_SECONDS)

bench: deps all
	bash scripts/deps.sh bench
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
