#!/bin/sh
# check_launch.sh RESDIR LOG: every launch shape the emulator ran (LOG: EMU_LAUNCH_LOG's lines, cuda_emu.h) held
# against what ptxas made of its kernel (RESDIR: NAME.ptx and NAME.res, ptxas -v's report, of `make
# test-cuda-launch CUDA=1`). A GPU refuses at launch a block it has not the registers or the shared memory for, or
# more threads than the kernel's __launch_bounds__; the emulator, which has no registers, would run it. Per block,
# as an sm_90 multiprocessor has them:
#   registers   ceil(threads / 32) warps x (the kernel's count per thread rounded up to 8) x 32 <= 65,536
#               (a warp's registers are allocated 256 at a time)
#   shared      static + dynamic <= 48 KiB; after cudaFuncSetAttribute(MaxDynamicSharedMemorySize, A):
#               dynamic <= A and static + A <= 227 KiB (the emulator refuses dynamic > A itself)
#   threads     <= .maxntid, where __launch_bounds__ set one
# Prints a line per refused shape and "N passed, N failed, 0 skipped" (a shape each); a launched kernel that ptxas
# did not report is a failure. Exit 0 when every shape fits, 1 when one does not, 2 on a usage error.
usage="usage: check_launch.sh RESDIR LOG"
[ $# = 2 ] || { echo "$usage" >&2; exit 2; }
res=$1 log=$2
ls "$res"/*.res >/dev/null 2>&1 ||
    { echo "check_launch.sh: $res: no *.res (make test-cuda-launch CUDA=1 makes them)" >&2; exit 2; }
[ -s "$log" ] || { echo "check_launch.sh: $log: no launches (make test-cuda-emu writes it)" >&2; exit 2; }
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# the kernels: "MANGLED REGISTERS STATIC_SMEM MAXNTID" (0: no bound), from ptxas's report and the PTX
for r in "$res"/*.res; do
    awk '/Compiling entry function/ { n = $0; sub(/.*function \047/, "", n); sub(/\047.*/, "", n) }
         /Used [0-9]+ registers/ { s = 0; if (match($0, /[0-9]+ bytes smem/)) s = substr($0, RSTART, RLENGTH) + 0
                                   print n, $5, s }' "$r"
done | sort -k1,1 >"$tmp/res"
cat "$res"/*.ptx | awk '/^(\.visible )?\.entry / { n = $0; sub(/.*\.entry /, "", n); sub(/\(.*/, "", n); print n, 0 }
                        /^\.maxntid / { t = $2; sub(/,/, "", t); print n, t }' |
    sort -k1,1 -k2,2nr | awk '!seen[$1]++' >"$tmp/ntid"
join "$tmp/res" "$tmp/ntid" >"$tmp/kernels"
[ -s "$tmp/kernels" ] || { echo "check_launch.sh: $res: no kernel in ptxas's report" >&2; exit 2; }
# a name as both sides demangle it, without return type, namespace of internal linkage or parameters
key() { c++filt | sed -e 's/(anonymous namespace):://g' -e 's/_INTERNAL_[0-9A-Za-z_]*:://g' -e 's/^void //' \
    -e 's/(.*//' -e 's/, /,/g' -e 's/ /_/g'; }
cut -d' ' -f1 "$tmp/kernels" | key >"$tmp/knames"
cut -d' ' -f2- "$tmp/kernels" | paste -d' ' "$tmp/knames" - >"$tmp/table" # KEY REGS SMEM MAXNTID

# the shapes: each executable's offsets named by its symbol table
: >"$tmp/shapes"
for exe in $(cut -d' ' -f1 "$log" | sort -u); do
    [ -x "$exe" ] || { echo "check_launch.sh: $exe (in $log): no such program" >&2; exit 2; }
    nm --defined-only "$exe" | awk '{ v = $1; sub(/^0+/, "", v); print v, $3 }' >"$tmp/syms"
    cut -d" " -f2 "$tmp/syms" | key | paste -d' ' "$tmp/syms" - | cut -d' ' -f1,3 >"$tmp/named"
    awk -v exe="$exe" 'NR == FNR { name[$1] = $2; next }
                       $1 == exe { o = $2; sub(/^0+/, "", o); print (o in name ? name[o] : "?" $2), $3, $4, $5, $6 }' \
        "$tmp/named" "$log" >>"$tmp/shapes"
done
sort -u "$tmp/shapes" | awk -v arch="${CUDA_ARCH:-90}" -v never="$tmp/never" '
    NR == FNR { # (a name in two sources, static in each: the larger counts, the smaller bound)
        if (!($1 in regs) || $2 > regs[$1]) regs[$1] = $2
        if (!($1 in smem) || $3 > smem[$1]) smem[$1] = $3
        if (!($1 in ntid) || ($4 && (!ntid[$1] || $4 < ntid[$1]))) ntid[$1] = $4
        next
    }
    {
        k = $1; threads = $2; dyn = $3; optin = $4; why = ""
        if (!(k in regs)) why = "not in ptxas'\''s report"
        else {
            r = int((regs[k] + 7) / 8) * 8 * 32 * int((threads + 31) / 32)
            if (r > 65536) why = why sprintf(" %d registers a thread: %d a block, over 65536;", regs[k], r)
            if (ntid[k] && threads > ntid[k]) why = why sprintf(" over its __launch_bounds__ of %d threads;", ntid[k])
            if (!optin && smem[k] + dyn > 49152)
                why = why sprintf(" %d + %d bytes of shared memory, over 48 KiB without cudaFuncSetAttribute;",
                                  smem[k], dyn)
            if (optin && smem[k] + optin > 232448)
                why = why sprintf(" %d static + %d allowed bytes of shared memory, over 227 KiB;", smem[k], optin)
        }
        if (why != "") {
            sub(/;$/, "", why)
            printf "FAIL check_launch %s: %d threads:%s\n", k, threads, why
            fail++
        } else pass++
        if (!(k in seen)) kernels++
        seen[k] = 1
        if (threads > maxt) maxt = threads
        if (dyn > maxd) maxd = dyn
    }
    END {
        for (k in regs) if (!(k in seen)) print k >never
        printf "check_launch: %d kernels in %d launch shapes (up to %d threads, %d bytes of dynamic shared memory) " \
               "against ptxas for sm_%s\n", kernels, pass + fail, maxt, maxd, arch
        printf "%d passed, %d failed, 0 skipped\n", pass, fail
        exit (fail > 0)
    }' "$tmp/table" - >"$tmp/out"
rc=$?
[ -s "$tmp/never" ] && echo "check_launch: compiled, never launched by the tests: $(sort "$tmp/never" | tr '\n' ' ')"
cat "$tmp/out"
exit $rc
