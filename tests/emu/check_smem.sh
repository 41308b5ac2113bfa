#!/bin/sh
# check_smem.sh BINARY: every static __shared__ array that libcommon/cuda declares lies, in the emulator's BINARY,
# in section emu_smem (tests/emu/smem.ld), which the scheduler makes fresh for each block. g++ ignores the section
# of a static in a template: such an array would be one copy that blocks share unseen, so it fails here.
set -e
bin=$1
[ -x "$bin" ] || { echo "check_smem.sh: $bin: no such program" >&2; exit 2; }
# the names: `__shared__ TYPE a[N], b[M], c;` -> a b c (extern ones are DYN_SMEM's, not static)
names=$(grep -h '__shared__' libcommon/cuda/*.cu | grep -v 'extern' | sed 's://.*::; s/.*__shared__ *[A-Za-z_0-9]* *//; s/;.*//' |
        tr ',' '\n' | sed 's/\[.*//; s/ //g' | sort -u)
range=$(nm "$bin" | awk '$3 == "__emu_smem_start" { s = $1 } $3 == "__emu_smem_end" { e = $1 } END { print s, e }')
nm -C "$bin" | awk -v names="$names" -v range="$range" '
    BEGIN { n = split(names, want, "\n"); for (i = 1; i <= n; i++) is[want[i]] = 1
            split(range, r, " "); lo = r[1]; hi = r[2] } # (equal-width hex: compared as strings)
    { k = split($0, part, "::"); name = part[k]; if (k < 2 || !(name in is)) next
      a = $1; seen[name] = 1
      if ((a "") >= (lo "") && (a "") < (hi "")) ok++; else { bad++; print "check_smem.sh: outside section emu_smem: " substr($0, 20) } }
    END { for (x in is) if (!(x in seen)) { bad++; print "check_smem.sh: __shared__ " x " not found in the program" }
          printf "%d passed, %d failed, 0 skipped\n", ok, bad; exit bad > 0 }'
