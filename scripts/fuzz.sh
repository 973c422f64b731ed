#!/usr/bin/env bash
# Build and run the libFuzzer targets in tests/fuzz/ (clang, ASan + UBSan).
#   scripts/fuzz.sh build              compile every target into build-fuzz/
#   scripts/fuzz.sh short              build, then fuzz each target briefly (~45 s in all);
#                                      prints PASS:/FAIL: lines that tests/run-all.sh counts
#   scripts/fuzz.sh run TARGET [SECS]  fuzz one target for longer (default 600 s)
#   scripts/fuzz.sh repro TARGET FILE  run one saved input (a crash reproducer) once
# Sources are compiled directly (the lists in src/*/meson.build), not the meson library,
# so every object is instrumented. The seed corpora in tests/fuzz/corpus-*/ are never
# written; new inputs go to build-fuzz/corpus/, crashes to build-fuzz/crashes/.
# Inputs that once crashed are kept in tests/fuzz/regress-*/ and replayed first.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=${FUZZ_OUT:-$TOP/build-fuzz}
CC=${FUZZ_CC:-clang}
SHORT_SECONDS=${FUZZ_SHORT_SECONDS:-45}
CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer -I"$TOP/include" -I"$TOP/src")
LIBS=(-lz -lzstd -ljansson -luring -lgnutls -lpthread -lm)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Targets and the library directories each one links; a target's share of a short run.
declare -A T_DIRS=([fuzz-opts]="src/util" [fuzz-qcow2-open]="src/util src/block src/nbd"
                  [fuzz-qmp-stream]="src/util src/qmp"
                  [fuzz-nbd-server]="src/util src/block src/nbd"
                  [fuzz-nbd-client]="src/util src/block src/nbd")
declare -A T_SHARE=([fuzz-opts]=20 [fuzz-qcow2-open]=80 [fuzz-qmp-stream]=20
                   [fuzz-nbd-server]=20 [fuzz-nbd-client]=20)
declare -A T_CORPUS=([fuzz-opts]=corpus-opts [fuzz-qcow2-open]=corpus-qcow2
                   [fuzz-qmp-stream]=corpus-qmp [fuzz-nbd-server]=corpus-nbd
                   [fuzz-nbd-client]=corpus-nbd-client)
declare -A T_REGRESS=([fuzz-opts]=regress-opts [fuzz-qcow2-open]=regress-qcow2
                    [fuzz-qmp-stream]=regress-qmp [fuzz-nbd-server]=regress-nbd
                    [fuzz-nbd-client]=regress-nbd-client)
TARGETS=(fuzz-opts fuzz-qcow2-open fuzz-qmp-stream fuzz-nbd-server fuzz-nbd-client)

die() { echo "fuzz.sh: $*" >&2; exit 2; }

# The .c files a library directory's meson.build lists (the same set the build uses).
sources_of() {
    grep -o "'[A-Za-z0-9_./-]*\.c'" "$TOP/$1/meson.build" | tr -d "'" | sed "s|^|$TOP/$1/|"
}

# Compile one source to an object unless the object is newer than it and every header.
compile() {
    local src=$1 obj=$2
    if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$NEWEST_HEADER" ]; then
        return 0
    fi
    "$CC" "${CFLAGS[@]}" -c "$src" -o "$obj"
}

# Build one target; the compiler's output goes to $OUT/TARGET.build.log.
build_target() {
    local t=$1 objs=() src obj d
    mkdir -p "$OUT/obj"
    NEWEST_HEADER=$(ls -t "$TOP"/include/qkit/*.h "$TOP"/src/*/*.h 2>/dev/null | head -1)
    {
        for d in ${T_DIRS[$t]}; do
            for src in $(sources_of "$d"); do
                obj="$OUT/obj/$(echo "${src#"$TOP"/}" | tr / _).o"
                compile "$src" "$obj" || return 1
                objs+=("$obj")
            done
        done
        compile "$TOP/tests/fuzz/$t.c" "$OUT/obj/$t.o" || return 1
        "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer "$OUT/obj/$t.o" "${objs[@]}" "${LIBS[@]}" \
            -o "$OUT/$t"
    } >"$OUT/$t.build.log" 2>&1
}

# Options for every run: a hang is an input that takes 10 s; the target's own output
# (check's report lines) is dropped, libFuzzer's and the sanitizers' is kept.
FUZZ_OPTS=(-timeout=10 -rss_limit_mb=2048 -close_fd_mask=3)

# Fuzz one target for SECS seconds; exit status non-zero on a crash, leak or hang.
run_target() {
    local t=$1 secs=$2
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes"
    # The subshell keeps bash's "Aborted" job notice out of the output.
    ("$OUT/$t" "${FUZZ_OPTS[@]}" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$OUT/crashes/$t-" "$OUT/corpus/$t" "$TOP/tests/fuzz/${T_CORPUS[$t]}" \
        >"$OUT/$t.log" 2>&1) 2>/dev/null
}

# Run each saved regression input of a target once; prints nothing when there are none.
replay_regressions() {
    local t=$1 dir=$TOP/tests/fuzz/${T_REGRESS[$t]} f rc
    [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] || return 0
    for f in "$dir"/*; do
        ("$OUT/$t" "${FUZZ_OPTS[@]}" -runs=1 "$f" >"$OUT/$t.replay.log" 2>&1) 2>/dev/null
        rc=$?
        if [ $rc -eq 0 ]; then
            echo "PASS: fuzz $t regression ${f##*/}"
        else
            echo "FAIL: fuzz $t regression ${f##*/} (exit $rc;" \
                 "rerun: scripts/fuzz.sh repro $t ${f#"$TOP"/})"
            show_report "$OUT/$t.replay.log"
        fi
    done
}

# The first sanitizer or libFuzzer report in a log, its top frames only, and where the
# input was saved.
show_report() {
    awk '/^==[0-9]+==ERROR|runtime error:|ALARM: working on the last Unit|out-of-memory \(/ {
             on = 1 }
         on && /^ *#[0-9]+ / { split($1, f, "#"); if (f[2] + 0 > 6) next }
         on { print; n++ }
         on && /^SUMMARY/ { exit }
         n > 30 { exit }' "$1" | sed 's/^/  /'
    grep -h 'Test unit written to' "$1" | head -1 | sed 's/^/  /'
}

# The short run: one PASS/FAIL line per target, with context on failure.
short() {
    command -v "$CC" >/dev/null || { for t in "${TARGETS[@]}"; do
        echo "FAIL: fuzz $t (no $CC: run scripts/deps.sh test)"; done; return; }
    mkdir -p "$OUT"
    for t in "${TARGETS[@]}"; do
        if ! build_target "$t"; then
            echo "FAIL: fuzz $t (build failed)"
            grep -E 'error|undefined reference' "$OUT/$t.build.log" | head -15 | sed 's/^/  /'
            continue
        fi
        replay_regressions "$t"
        local secs=$(( SHORT_SECONDS * ${T_SHARE[$t]} / 100 ))
        [ "$secs" -ge 1 ] || secs=1
        if run_target "$t" "$secs"; then
            local runs
            runs=$(grep -o 'Done [0-9]* runs' "$OUT/$t.log" | grep -o '[0-9]*')
            echo "PASS: fuzz $t (${runs:-?} inputs in ${secs}s, no crash)"
        else
            local after
            after=$(ls -t "$OUT/crashes" | head -1)
            echo "FAIL: fuzz $t (crash, leak or hang; reproducer: build-fuzz/crashes/$after," \
                 "rerun: scripts/fuzz.sh repro $t build-fuzz/crashes/$after)"
            show_report "$OUT/$t.log"
        fi
    done
}

mode=${1:-short}
case $mode in
build)
    mkdir -p "$OUT"
    rc=0
    for t in "${TARGETS[@]}"; do
        if build_target "$t"; then echo "built $OUT/$t"; else
            echo "build of $t failed:"; tail -20 "$OUT/$t.build.log"; rc=1; fi
    done
    exit $rc ;;
short)
    short ;;
run)
    t=${2:-}; [ -n "${T_DIRS[$t]:-}" ] || die "unknown target '$t' (${TARGETS[*]})"
    mkdir -p "$OUT"
    build_target "$t" || { tail -20 "$OUT/$t.build.log"; exit 1; }
    run_target "$t" "${3:-600}"; rc=$?
    tail -5 "$OUT/$t.log"; exit $rc ;;
repro)
    t=${2:-}; [ -n "${T_DIRS[$t]:-}" ] || die "unknown target '$t' (${TARGETS[*]})"
    [ $# -ge 3 ] || die "usage: $0 repro TARGET FILE..."
    mkdir -p "$OUT"
    build_target "$t" || { tail -20 "$OUT/$t.build.log"; exit 1; }
    shift 2; exec "$OUT/$t" -timeout=10 -runs=1 "$@" ;;
*)
    die "usage: $0 [build|short|run TARGET [SECS]|repro TARGET FILE...]" ;;
esac
