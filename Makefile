# Thin wrapper around meson + ninja.
BUILD ?= build
ASAN_BUILD ?= build-asan

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

bench: deps all
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
