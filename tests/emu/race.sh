#!/bin/sh
# race.sh [SECTION...]: the race check (`make test-cuda-race`). First tests/emu/test_race.sh (the check finds a
# missing barrier and blocks sharing a word, and is quiet on what a GPU orders) and tests/emu/check_smem.sh (every
# static __shared__ array fresh for each block); then test_cuda_ops built for the check (build/emu-race), in two
# groups of sections at once (ThreadSanitizer is slow; about 7 minutes on 2 cores), each a run that stops at its
# first race (exit 66). SECTIONs: run those instead, in one group. Where ThreadSanitizer cannot map its memory
# (some kernels' address-space layouts), it runs again without address randomisation (setarch -R); where it still
# cannot, the three parts are counted as skipped.
cd "$(dirname "$0")/../.." || exit 2
ops=build/emu-race/test_cuda_ops
for p in $ops build/emu-race/test_race; do
    [ -x "$p" ] || { echo "race.sh: $p: not built (make $p)" >&2; exit 2; }
done
export OPENBLAS_NUM_THREADS=1 # OpenBLAS's own threads are not instrumented
# can ThreadSanitizer start here? (a race in the probe's case is test_race.sh's to report, below)
starts() { ! "$@" build/emu-race/test_race barrier 2>&1 | grep -q 'FATAL: ThreadSanitizer'; }
run=""
if ! starts; then
    if starts setarch "$(uname -m)" -R; then
        run="setarch $(uname -m) -R"
        echo "race.sh: ThreadSanitizer runs here only without address randomisation: setarch -R"
    else
        echo "race.sh: ThreadSanitizer cannot start on this machine:" \
            "$(build/emu-race/test_race barrier 2>&1 | grep 'FATAL: ThreadSanitizer' | head -1)"
        echo "0 passed, 0 failed, 3 skipped"
        exit 0
    fi
fi
echo "== tests/emu/test_race.sh"
$run tests/emu/test_race.sh build/emu-race/test_race || exit 1
echo "== tests/emu/check_smem.sh"
tests/emu/check_smem.sh $ops || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# group N SECTION...: the sections in one run, its output to $tmp/N
group() {
    n=$1
    shift
    TSAN_OPTIONS="halt_on_error=1 exitcode=66" $run $ops "$@" >"$tmp/$n" 2>&1
    echo $? >"$tmp/$n.rc"
}
if [ $# -gt 0 ]; then
    echo "== $ops $*"
    group 1 "$@"
    cat "$tmp/1"
    exit "$(cat "$tmp/1.rc")"
fi
# the attention section (about 11 minutes under ASan, far longer here) is left to a run by hand:
# tests/emu/race.sh attention
echo "== $ops, every section but attention, in two groups"
group 1 decoding profile device mma resampling &
group 2 losses layernorm linear "elementwise and dropout" embedding optimizer "bf16 activations" &
wait
cat "$tmp/1" "$tmp/2"
[ "$(cat "$tmp/1.rc")" = 0 ] && [ "$(cat "$tmp/2.rc")" = 0 ]
