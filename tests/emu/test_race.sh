#!/bin/sh
# test_race.sh PROGRAM: each case of tests/emu/test_race.cpp (PROGRAM: it, built for the race check), expecting
# ThreadSanitizer's report (exit 66) where the case has a race and a clean run (exit 0) where it has none (dependent
# launches among them: a read of the kernel before's output, or a write it reads, before the wait); and the
# emulator's own checks of what a GPU refuses: optin (a launch of over 48 KiB of dynamic shared memory refused until
# allowed), ldm and ldm-misaligned (ldmatrix's layout; a row address not 16-byte aligned aborts, exit 134)
prog=$1
[ -x "$prog" ] || { echo "test_race.sh: $prog: no such program" >&2; exit 2; }
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
pass=0 fail=0
for c in barrier:0 no-barrier:66 syncwarp:0 shuffle-only:66 own-words:0 one-word:66 smem:0 stale:0 acquire:0 \
         no-acquire:66 pdl-wait:0 pdl-early-read:66 pdl-early-write:66 plain-early-read:0 pdl-chain:66 optin:0 ldm:0 \
         ldm-misaligned:134; do
    name=${c%:*} want=${c#*:}
    OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="exitcode=66" "$prog" "$name" >"$log" 2>&1
    got=$?
    if [ "$got" = "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL test_race $name: exit $got, expected $want ($([ "$want" = 66 ] && echo "a race report" || echo "no report"))"
        sed -n '1,30p' "$log"
    fi
done
echo "$pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ]
