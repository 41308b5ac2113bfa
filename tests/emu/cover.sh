#!/bin/sh
# cover.sh DIR: `make cover-cuda-emu`'s report. Runs DIR/test_cuda_ops and DIR/test_cuda_model (built with gcc
# --coverage for the emulator; counts from earlier runs removed first), then prints for each source of
# libcommon/cuda the lines that no test ran ("FILE:LINE: text", the source's own line), and a closing line per
# source: lines run of lines with code. The headers (.cuh) are left out: each object counts them apart, so a line one
# object never ran may have run in another. Exit 1 when a test fails (the counts would not be the tests'), 2 on usage.
# Lines that only handle an error a GPU or cuBLAS returns cannot run on the emulator; the rest is code that has never
# run anywhere until a GPU window, where a test is wanted first.
cd "$(dirname "$0")/../.." || exit 2
dir=${1:-}
[ -n "$dir" ] && [ -x "$dir/test_cuda_ops" ] && [ -x "$dir/test_cuda_model" ] ||
    { echo "usage: cover.sh DIR (DIR/test_cuda_ops, DIR/test_cuda_model built with --coverage: make cover-cuda-emu)" >&2; exit 2; }
rm -f "$dir"/*.gcda
export OPENBLAS_NUM_THREADS=1
for t in test_cuda_ops test_cuda_model; do
    echo "== $dir/$t"
    "$dir/$t" >"$dir/$t.log" 2>&1 || { tail -5 "$dir/$t.log"; echo "cover.sh: $t failed (log: $dir/$t.log)" >&2; exit 1; }
    tail -1 "$dir/$t.log"
done
echo "== lines of libcommon/cuda no test ran"
for src in libcommon/cuda/*.cu libcommon/cuda/gpu_backend.c; do
    base=$(basename "$src")
    obj="$dir/${base%.*}.o"
    [ -f "${obj%.o}.gcno" ] || { echo "cover.sh: $obj: no coverage notes (built without --coverage?)" >&2; exit 2; }
    # gcov -t: "COUNT: LINE: text" per line of every source the object holds; "#####" never ran, "-" no code
    gcov -t -o "$obj" "$src" 2>/dev/null | awk -v want="$src" '
        /^ *-: *0:Source:/ { sub(/^ *-: *0:Source:/, ""); cur = $0; next }
        cur != want { next }
        {
            split($0, f, ":"); c = f[1]; gsub(/ /, "", c); n = f[2] + 0
            if (c == "-" || n == 0 || seen[n]++) next # of a template: the first count is its instances summed
            code++; last = n
            if (c == "#####" || c == "=====") { never[n] = 1; sub(/^[^:]*:[^:]*:/, ""); text[n] = $0 }
        }
        END {
            k = 0
            for (n = 1; n <= last; n++) if (n in never) { k++; printf "%s:%d:%s\n", want, n, text[n] }
            printf "%s: %d of %d lines run\n", want, code - k, code
        }'
done
