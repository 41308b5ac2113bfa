#!/bin/sh
# test_check_launch.sh RESDIR LOG: check_launch.sh's own test on the real report and launches. The launches as they
# are must pass; the same launches made to refuse, each in one way, must fail with that reason: every block of 1,024
# threads (over the registers of the large kernels and the __launch_bounds__ of the bounded ones), every launch with
# 48 KiB of dynamic shared memory and no cudaFuncSetAttribute (over the limit wherever the kernel has static shared
# memory), and a kernel at an address no symbol names.
res=$1 log=$2
[ $# = 2 ] || { echo "usage: test_check_launch.sh RESDIR LOG" >&2; exit 2; }
[ -s "$log" ] || { echo "test_check_launch.sh: $log: no launches (make test-cuda-emu writes it)" >&2; exit 2; }
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
# expect NAME WANT_EXIT PATTERN LOG: check_launch.sh on LOG exits WANT_EXIT and prints PATTERN
expect() {
    tests/emu/check_launch.sh "$res" "$4" >"$tmp/out" 2>&1
    got=$?
    if [ "$got" = "$2" ] && grep -q -- "$3" "$tmp/out"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL test_check_launch $1: exit $got (expected $2), output:"
        tail -5 "$tmp/out"
    fi
}
expect "the launches as they are" 0 " 0 failed, 0 skipped" "$log"
awk '{ $3 = 1024; print }' "$log" >"$tmp/threads"
expect "1024 threads: registers" 1 "a block, over 65536" "$tmp/threads"
expect "1024 threads: launch bounds" 1 "over its __launch_bounds__ of" "$tmp/threads"
awk '{ $4 = 49152; $5 = 0; print }' "$log" >"$tmp/smem"
expect "48 KiB dynamic" 1 "over 48 KiB without cudaFuncSetAttribute" "$tmp/smem"
awk 'NR == 1 { $2 = "1" } { print }' "$log" >"$tmp/unknown"
expect "no such kernel" 1 "not in ptxas's report" "$tmp/unknown"
echo "$pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ]
