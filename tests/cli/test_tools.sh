#!/usr/bin/env bash
# test_tools: shell tests of midi2remi, remi2midi and shard (HOUSE_STYLE §2, §3, §5d; spec/formats.md §1-3).
# Checks --help, exit codes and option errors, that a failed or interrupted run leaves no output (not even *.tmp.*),
# the midi2remi | remi2midi -O | midi2remi round trip over all 909 POP909 songs, and the shard split and file format.
# Env: BIN (tool folder, default bin) and SHARED (default ../shared), relative to the repository root unless absolute.
# Missing data under $SHARED is a failure, never a skip. Ends with "N passed, N failed, N skipped"; exits 1 on any failure.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

M2R=$B/midi2remi R2M=$B/remi2midi SHARD=$B/shard
for t in "$M2R" "$R2M" "$SHARD"; do check "$t is built" test -x "$t"; done

# ---- every tool: --help, unknown options, bad option values -------------------------------------

for t in midi2remi remi2midi shard; do
    for h in -h --help; do
        expect "$t $h exits 0" 0 "$B/$t" $h </dev/null
        check "$t $h prints usage on stdout" grep -q "^Usage: $t " "$T/out"
        check "$t $h leaves stderr empty" empty "$T/err"
    done
    expect "$t --no-such-option exits 2" 2 "$B/$t" --no-such-option </dev/null
    check "$t --no-such-option: nothing on stdout" empty "$T/out"
    check "$t --no-such-option: one error line naming it" usage_err "$T/err" "^$t: unknown option: '--no-such-option'$"
    expect "$t -Z exits 2" 2 "$B/$t" -Z </dev/null
done
# usage_lists TOOL OPTION...: TOOL --help mentions every OPTION
usage_lists() {
    local t=$1 o
    shift
    "$B/$t" --help >"$T/usage" 2>/dev/null
    for o in "$@"; do grep -qe "$o" "$T/usage" || return 1; done
}
check "midi2remi --help lists its options" usage_lists midi2remi ' --ids' ' --vocab' ' -j N' ' -q'
check "remi2midi --help lists its options" usage_lists remi2midi ' -o FILE' ' -O DIR' ' -q'
check "shard --help lists its options" usage_lists shard ' -o DIR' ' --val R' ' --test R' ' --seed N' ' --dump' ' --ids' ' --keep-duplicates' ' --transposed-duplicates'

NEVER=$T/never # no usage error may create anything
# bad_usage TOOL ARGS...: exits 2, prints nothing on stdout and one error line starting with the tool's name
bad_usage() {
    local t=$1
    shift
    usage_case "$B/$t" "$@" </dev/null
}
bad_usage midi2remi -j 0
check "midi2remi -j 0: the error names the option and the value" grep -q -- "-j: '0'" "$T/err"
bad_usage midi2remi -j x
bad_usage midi2remi -j 257
bad_usage midi2remi -j 2x
bad_usage midi2remi -j ''
bad_usage midi2remi -j
bad_usage shard -o "$NEVER" --val 2
bad_usage shard -o "$NEVER" --val x
bad_usage shard -o "$NEVER" --val 0.1x
bad_usage shard -o "$NEVER" --test -0.1
bad_usage shard -o "$NEVER" --val 0.6 --test 0.6
bad_usage shard -o "$NEVER" --seed -1
bad_usage shard -o "$NEVER" --seed 1.5
bad_usage shard -o "$NEVER" --val
bad_usage shard
bad_usage shard --dump
bad_usage shard --dump "$NEVER/a.bin" "$NEVER/b.bin"
bad_usage shard --dump "$NEVER/a.bin" -o "$NEVER"
bad_usage remi2midi
bad_usage remi2midi -o "$NEVER/a.mid" -O "$NEVER"
bad_usage remi2midi -o
bad_usage remi2midi -o "$NEVER/a.mid" "$NEVER/in1" "$NEVER/in2"
check "usage errors create no output" no_files "$NEVER"

# ---- data -------------------------------------------------------------------------------------

POP=$SHARED/data/pop909
VOCAB=$SHARED/data/remi-golden/vocab.txt
n_mid=$(ls "$POP" 2>/dev/null | grep -c '\.mid$')
if [ ! -d "$POP" ] || [ "$n_mid" -ne 909 ] || [ ! -s "$VOCAB" ]; then
    fail "test data: want 909 songs in $POP and $VOCAB (SHARED='$SHARED')" "found $n_mid songs"
    summary
fi
pass
printf '%s\n' "$POP"/*.mid >"$T/list.txt" # byte order, as midi2remi walks folders

# ---- midi2remi ----------------------------------------------------------------------------------

expect "midi2remi --vocab exits 0" 0 "$M2R" --vocab
check "midi2remi --vocab equals remi-golden/vocab.txt byte for byte" same "$T/out" "$VOCAB"

expect "midi2remi FOLDER (909 songs) exits 0" 0 "$M2R" "$POP"
mv "$T/out" "$T/pop.txt"
check "midi2remi FOLDER: stderr empty when not a terminal" empty "$T/err"
check "midi2remi FOLDER: 909 documents" n_lines "$T/pop.txt" 909
check "midi2remi FOLDER: stdout holds only NAME<TAB>TOKENS lines" all_docs "$T/pop.txt"
check "midi2remi FOLDER: names are the files, in byte order" same <(cut -f1 "$T/pop.txt") "$T/list.txt"
check "midi2remi FOLDER: no empty document" test "$(cut -f2 "$T/pop.txt" | grep -c '^$')" -eq 0

expect "midi2remi < LIST exits 0" 0 "$M2R" <"$T/list.txt"
check "midi2remi: paths on stdin give the same output as the folder" same "$T/out" "$T/pop.txt"
head -n 3 "$T/list.txt" | sed 's/$/\r/' | run "$M2R"
check "midi2remi: a list with CRLF line ends reads the same files" test "$rc" = 0 -a "$(cut -f1 "$T/out")" = "$(head -n 3 "$T/list.txt")"
mkdir "$T/nomidi" && touch "$T/nomidi/notes.txt"
expect "midi2remi of a folder without MIDI files exits 1" 1 "$M2R" "$T/nomidi"
check "midi2remi, a folder without MIDI files: one line saying so" one_line "$T/err" "^midi2remi: no MIDI file .*nomidi'$"
expect "midi2remi FILES... exits 0" 0 "$M2R" "$POP"/*.mid
check "midi2remi: paths as arguments give the same output as the folder" same "$T/out" "$T/pop.txt"

# input order, not sorted order, and 909 files span more than one batch of work
tac "$T/list.txt" >"$T/rlist.txt"
expect "midi2remi -j 1 exits 0" 0 "$M2R" -j 1 <"$T/rlist.txt"
mv "$T/out" "$T/j1.txt"
expect "midi2remi -j 2 exits 0" 0 "$M2R" -j2 <"$T/rlist.txt"
mv "$T/out" "$T/j2.txt"
check "midi2remi: -j 1 and -j 2 are byte-identical" same "$T/j1.txt" "$T/j2.txt"
check "midi2remi -j 2: documents come in input order" same <(cut -f1 "$T/j2.txt") "$T/rlist.txt"
check "midi2remi -j 2: each document is the same as in the folder run" same "$T/j2.txt" <(tac "$T/pop.txt")

SONG=$POP/003.mid
sed -n 3p "$T/pop.txt" >"$T/song.txt"
expect "midi2remi - (MIDI bytes on stdin) exits 0" 0 "$M2R" - <"$SONG"
check "midi2remi -: one document named '-' with the file's tokens" same "$T/out" <(printf -- '-\t'; cut -f2 "$T/song.txt")

expect "midi2remi --ids exits 0" 0 "$M2R" --ids "$SONG"
mv "$T/out" "$T/song.ids"
check "midi2remi --ids: decimal ids" grep -Eq $'^[^\t]+\t[0-9]+( [0-9]+)*$' "$T/song.ids"
check "midi2remi --ids: every id is in the vocabulary and names the same token" same "$T/song.txt" <(
    awk -F'\t' 'NR == FNR { tok[$1] = $2; next }
        { n = split($2, a, " "); s = ""
          for (i = 1; i <= n; i++) { if (!(a[i] in tok)) exit 1; s = s (i > 1 ? " " : "") tok[a[i]] }
          print $1 "\t" s }' "$VOCAB" "$T/song.ids")
expect "remi2midi accepts --ids documents" 0 "$R2M" -o "$T/ids.mid" "$T/song.ids"
expect "remi2midi accepts the string documents" 0 "$R2M" -o "$T/str.mid" "$T/song.txt"
check "remi2midi: ids and strings decode to the same MIDI bytes" same "$T/ids.mid" "$T/str.mid"

mkdir "$T/bad"
echo "not a midi file" >"$T/bad/text.mid"
head -c 10 "$POP/001.mid" >"$T/bad/cut.mid" # a cut header (a cut track is read leniently, as MidiTok does)
expect "midi2remi with bad files among good ones exits 1" 1 \
    "$M2R" "$POP/001.mid" "$T/bad/missing.mid" "$T/bad/text.mid" "$POP/002.mid" "$T/bad/cut.mid" "$POP/004.mid"
check "midi2remi bad files: the good files are still converted, in order" same "$T/out" <(sed -n '1p;2p;4p' "$T/pop.txt")
check "midi2remi bad files: stdout holds only documents" all_docs "$T/out"
check "midi2remi bad files: one stderr line per bad file" n_lines "$T/err" 3
check "midi2remi bad files: missing file named, with the reason" grep -Eq "^midi2remi: .*bad/missing\.mid: [Nn]o such file" <(sed -n 1p "$T/err")
check "midi2remi bad files: text file named, with the reason" grep -Eq "^midi2remi: .*bad/text\.mid: .*(MIDI|MThd)" <(sed -n 2p "$T/err")
check "midi2remi bad files: truncated file named, with the reason" grep -Eq "^midi2remi: .*bad/cut\.mid: .*truncated" <(sed -n 3p "$T/err")

# ---- remi2midi ----------------------------------------------------------------------------------

GOOD='Bar_None Position_0 Program_0 Pitch_60 Velocity_63 Duration_1.0.8'
mkdir "$T/r1"
printf '\n\nx.mid\tBar_None Frobnicate_7 Pitch_60\n' >"$T/unknown.txt"
expect "remi2midi -o: unknown token exits 1" 1 "$R2M" -o "$T/r1/x.mid" "$T/unknown.txt"
check "remi2midi unknown token: one error line naming line 3 and the token" \
    one_line "$T/err" "^remi2midi: .*line 3.*'Frobnicate_7'"
check "remi2midi unknown token: no output file, no temporaries" no_files "$T/r1"
printf 'a/x.mid\t%s\nb/y.mid\t%s\n' "Frobnicate_7 $GOOD" "$GOOD" >"$T/unknown1.txt"
expect "remi2midi -O: unknown token in the first document exits 1" 1 "$R2M" -O "$T/r1/o" "$T/unknown1.txt"
check "remi2midi -O unknown token: error names line 1 and the token" one_line "$T/err" "line 1.*'Frobnicate_7'"
check "remi2midi -O unknown token: no output file" no_files "$T/r1/o"
printf 'a/x.mid\t%s\nb/y.mid\t%s\n' "$GOOD" "Frobnicate_7 $GOOD" >"$T/unknown2.txt"
expect "remi2midi -O: unknown token in the second document exits 1" 1 "$R2M" -O "$T/r1/o2" "$T/unknown2.txt"
check "remi2midi -O unknown token later: the first document's file is not left either" no_files "$T/r1/o2"
mkdir -p "$T/r1/o3/y.mid"
printf 'a/x.mid\t%s\nb/y.mid\t%s\n' "$GOOD" "$GOOD" >"$T/good2.txt"
expect "remi2midi -O: a folder where the second file goes exits 1" 1 "$R2M" -O "$T/r1/o3" "$T/good2.txt"
check "remi2midi -O folder in the way: one error line naming it" one_line "$T/err" "^remi2midi: .*y.mid.*Is a directory"
check "remi2midi -O folder in the way: the first file is not left either" test "$(ls -A "$T/r1/o3")" = y.mid
echo old >"$T/r1/keep.mid"
expect "remi2midi -o over an existing file: unknown token exits 1" 1 "$R2M" -o "$T/r1/keep.mid" <"$T/unknown.txt"
check "remi2midi unknown token: the existing file is untouched" same "$T/r1/keep.mid" <(echo old)
check "remi2midi unknown token: no temporaries next to it" no_tmp "$T/r1"
rm -f "$T/r1/keep.mid"

printf 'a/x.mid\t%s\nb/y.mid\t%s\n' "$GOOD" "$GOOD" >"$T/two.txt"
mkdir "$T/r2"
expect "remi2midi -o with two documents exits 1" 1 "$R2M" -o "$T/r2/two.mid" <"$T/two.txt"
check "remi2midi -o two documents: one error line" one_line "$T/err" "^remi2midi: .*-O"
check "remi2midi -o two documents: no file left" no_files "$T/r2"
printf '\n\n' >"$T/nodoc.txt"
expect "remi2midi -o with no document exits 1" 1 "$R2M" -o "$T/r2/none.mid" "$T/nodoc.txt"
check "remi2midi -o no document: no file left" no_files "$T/r2"

# hand-made soup: Position before any Bar; Pitch then Bar (skip); stray Velocity, Duration (2 skips);
# Pitch Velocity PAD (Pitch, Velocity, PAD skipped); one good note in bar 1 and one at the end: 6 of 15 skipped
SOUP='Position_4 Pitch_60 Bar_None Position_0 Pitch_60 Velocity_63 Duration_1.0.8 Velocity_63 Duration_1.0.8'
SOUP="$SOUP Pitch_62 Velocity_63 PAD_None Pitch_64 Velocity_63 Duration_1.0.8"
printf 'soup\t%s\n' "$SOUP" >"$T/soup.txt"
expect "remi2midi: token soup exits 0" 0 "$R2M" -o "$T/soup.mid" "$T/soup.txt"
check "remi2midi soup: stderr reports skipped 6 of 15 tokens" one_line "$T/err" '^remi2midi: soup: skipped 6 of 15 tokens$'
expect "midi2remi reads the decoded soup" 0 "$M2R" "$T/soup.mid"
check "remi2midi soup: the two well-formed notes survive, in bar 1" same "$T/out" <(printf '%s\t%s\n' "$T/soup.mid" \
    'Bar_None Bar_None Position_0 Program_0 Pitch_60 Velocity_63 Duration_1.0.8 Program_0 Pitch_64 Velocity_63 Duration_1.0.8')
printf 'tail\tBar_None Position_0 Pitch_60\n' >"$T/tail.txt"
expect "remi2midi: a Pitch at the end of a document exits 0" 0 "$R2M" -o "$T/tail.mid" "$T/tail.txt"
check "remi2midi: a trailing Pitch is 1 of 3 skipped" one_line "$T/err" '^remi2midi: tail: skipped 1 of 3 tokens$'

# random valid tokens (specials included); the expected count follows the grammar of spec/remi.md §6
awk -F'\t' -v seed=909 'NR == 1 { srand(seed) } { tok[n++] = $2 }
    END { s = ""; for (i = 0; i < 3000; i++) s = s (i ? " " : "") tok[int(rand() * n)]; print "rand/soup.mid\t" s }' \
    "$VOCAB" >"$T/rand.txt"
want_skip=$(cut -f2 "$T/rand.txt" | tr ' ' '\n' | awk '{ t[NR] = $0 } END {
    for (i = 1; i <= NR; i++) {
        if (t[i] ~ /^Pitch_/) {
            if (i + 2 <= NR && t[i + 1] ~ /^Velocity_/ && t[i + 2] ~ /^Duration_/) i += 2; else k++
        } else if (t[i] ~ /^(Velocity_|Duration_|PAD_|BOS_|EOS_|MASK_)/) k++
    }
    print k + 0 }')
expect "remi2midi: 3000 random tokens exit 0" 0 "$R2M" -o "$T/rand.mid" "$T/rand.txt"
check "remi2midi random soup: stderr reports skipped $want_skip of 3000 tokens" \
    one_line "$T/err" "^remi2midi: rand/soup\.mid: skipped $want_skip of 3000 tokens$"
expect "midi2remi reads the decoded random soup" 0 "$M2R" "$T/rand.mid"

# -O: one file per document, named after it; repeated base names get -2, -3
{
    printf 'a/x.mid\t%s\n' "$(sed -n 1p "$T/pop.txt" | cut -f2)"
    printf 'b/x.mid\t%s\n' "$(sed -n 2p "$T/pop.txt" | cut -f2)"
    printf 'c/d/y.midi\t%s\n' "$GOOD"
    printf 'z\t%s\n' "$GOOD"
} >"$T/multi.txt"
expect "remi2midi -O DIR exits 0" 0 "$R2M" -O "$T/multi" "$T/multi.txt"
check "remi2midi -O: nothing on stdout" empty "$T/out"
check "remi2midi -O: four files" dir_count "$T/multi" 4
printf 'x.mid\t%s\n' "$GOOD" >"$T/one.txt"
"$R2M" -o "$T/one.mid" "$T/one.txt"
expect "remi2midi -o - exits 0" 0 "$R2M" -o - "$T/one.txt"
check "remi2midi -o -: the bytes -o FILE writes, on stdout" same "$T/out" "$T/one.mid"
check "remi2midi -o -: no file named -" test ! -e ./-
for f in x x-2 y z; do check "remi2midi -O: $f.mid written" test -s "$T/multi/$f.mid"; done
expect "midi2remi reads the -O files" 0 "$M2R" "$T/multi/x.mid" "$T/multi/x-2.mid"
check "remi2midi -O: x.mid and x-2.mid hold the first and second document" \
    same <(cut -f2 "$T/out") <(sed -n '1p;2p' "$T/pop.txt" | cut -f2)

# ---- round trip over all of POP909 --------------------------------------------------------------

expect "round trip: remi2midi -O of 909 documents exits 0" 0 "$R2M" -O "$T/rt" "$T/pop.txt"
check "round trip: remi2midi skips nothing on real documents" empty "$T/err"
check "round trip: 909 MIDI files, no temporaries" dir_count "$T/rt" 909
expect "round trip: midi2remi of the decoded folder exits 0" 0 "$M2R" "$T/rt"
mv "$T/out" "$T/rt.txt"
check "round trip: the same song names, in order" same <(cut -f1 "$T/rt.txt" | sed 's|.*/||') <(sed 's|.*/||' "$T/list.txt")
check "round trip: token column identical to the first pass, line for line" \
    same <(cut -f2 "$T/rt.txt") <(cut -f2 "$T/pop.txt")
# a long document: one program's 20,000 notes go to MTrks of at most 8,192 (libsmf's save is quadratic in a
# track's events) and read back as they were
awk -v g="$GOOD" 'BEGIN { printf "long.mid\t%s", g; for (i = 1; i < 20000; i++) printf " %s", g; print "" }' >"$T/long.txt"
expect "remi2midi of a document of 20,000 notes exits 0" 0 "$R2M" -o "$T/long.mid" "$T/long.txt"
check "20,000 notes: a tempo track and three MTrks of notes" test "$(grep -ao MTrk "$T/long.mid" | wc -l)" = 4
expect "midi2remi of it exits 0" 0 "$M2R" "$T/long.mid"
check "20,000 notes: read back as they were" same <(cut -f2 "$T/out") <(cut -f2 "$T/long.txt")

# ---- shard ------------------------------------------------------------------------------------

SPLITS="train val test"
# manifest_field DIR SPLIT FIELD: FIELD (documents, tokens) of SPLIT in DIR/manifest.json
manifest_field() { grep -E "\"$2\": *\{" "$1/manifest.json" | grep -Eo "\"$3\": *[0-9]+" | grep -Eo '[0-9]+$'; }
# dump_all DIR: the documents of the three shards of DIR
dump_all() { for s in $SPLITS; do "$SHARD" --dump "$1/$s.bin" || return 1; done; }
# splits_of DIR: "file-name<TAB>split" for every document of DIR, sorted
splits_of() {
    for s in $SPLITS; do "$SHARD" --dump "$1/$s.bin" | cut -f1 | sed "s|.*/||; s|\$|\t$s|" || return 1; done | sort
}

expect "shard -o DIR of POP909 exits 0" 0 "$SHARD" -o "$T/sh" "$T/pop.txt"
check "shard: nothing on stdout" empty "$T/out"
check "shard: writes exactly train.bin val.bin test.bin manifest.json" \
    same <(ls "$T/sh") <(printf '%s\n' manifest.json test.bin train.bin val.bin)
dump_all "$T/sh" >"$T/dump.txt"
check "shard --dump of the three files exits 0" test $? = 0
check "shard --dump gives back exactly the input documents (as a multiset)" \
    same <(sort "$T/dump.txt") <(sort "$T/pop.txt")
total=0
for s in $SPLITS; do
    "$SHARD" --dump "$T/sh/$s.bin" >"$T/d_$s.txt"
    n=$(wc -l <"$T/d_$s.txt")
    total=$((total + n))
    check "shard manifest: $s documents match the dump ($n)" test "$(manifest_field "$T/sh" "$s" documents)" = "$n"
    check "shard manifest: $s tokens match the dump" \
        test "$(manifest_field "$T/sh" "$s" tokens)" = "$(cut -f2 "$T/d_$s.txt" | wc -w)"
done
check "shard: the three splits hold all 909 documents" test "$total" -eq 909
check "shard manifest: vocabulary size 348" grep -Eq '"vocab_size": *348' "$T/sh/manifest.json"
for s in val test; do
    n=$(wc -l <"$T/d_$s.txt")
    check "shard: $s gets about 5% of 909 documents ($n)" test "$n" -ge 20 -a "$n" -le 80
done
expect "shard --dump --ids exits 0" 0 "$SHARD" --dump "$T/sh/val.bin" --ids
check "shard --dump --ids: decimal ids" all_docs "$T/out"
check "shard --dump --ids: ids only" test "$(cut -f2 "$T/out" | grep -Ec '[^0-9 ]')" = 0

splits_of "$T/sh" >"$T/split_full.txt"
# a subset: every third document; adding the rest must not move any of them
awk 'NR % 3 == 1' "$T/pop.txt" >"$T/sub.txt"
expect "shard of a subset exits 0" 0 "$SHARD" -q -o "$T/sub" "$T/sub.txt"
splits_of "$T/sub" >"$T/split_sub.txt"
check "shard: the subset has its 303 documents" n_lines "$T/split_sub.txt" 303
check "shard: adding documents never moves one to another split" test -z "$(comm -23 "$T/split_sub.txt" "$T/split_full.txt")"
# the same documents read from another folder
sed $'s|^[^\t]*/|elsewhere/deeper/|' "$T/pop.txt" >"$T/moved.txt"
expect "shard of the documents under another folder exits 0" 0 "$SHARD" -q -o "$T/moved" "$T/moved.txt"
check "shard: another folder prefix in NAME splits identically" same <(splits_of "$T/moved") "$T/split_full.txt"
check "shard: the moved documents keep their new names" grep -q '^elsewhere/deeper/' <("$SHARD" --dump "$T/moved/val.bin")
expect "shard --seed 2 exits 0" 0 "$SHARD" -q --seed 2 -o "$T/seed2" "$T/pop.txt"
check "shard: another seed gives another split" differ <(splits_of "$T/seed2") "$T/split_full.txt"

# duplicates: the same tokens under other names are dropped (the first kept) and counted; --keep-duplicates keeps
# them; --transposed-duplicates also drops the same notes two semitones up (drums stay, as shard.h hashes them)
manifest_count() { grep -Eo "\"$2\": *[0-9]+" "$1/manifest.json" | grep -Eo '[0-9]+$'; }
{ cat "$T/sub.txt"; awk 'NR % 5 == 1' "$T/sub.txt" | sed $'s|^[^\t]*/|dup/copy-|'; } >"$T/dups.txt"
n_copies=$(awk 'NR % 5 == 1' "$T/sub.txt" | wc -l)
expect "shard of documents with $n_copies duplicates exits 0" 0 "$SHARD" -o "$T/dups" "$T/dups.txt"
check "shard duplicates: summary counts them" grep -q " $n_copies duplicates skipped" "$T/err"
check "shard duplicates: manifest duplicates_skipped = $n_copies" test "$(manifest_count "$T/dups" duplicates_skipped)" = "$n_copies"
check "shard duplicates: the first of each is kept, the copies are not" same <(splits_of "$T/dups") "$T/split_sub.txt"
expect "shard --keep-duplicates exits 0" 0 "$SHARD" -q --keep-duplicates -o "$T/keep" "$T/dups.txt"
check "shard --keep-duplicates: every document kept" test "$(splits_of "$T/keep" | wc -l)" = $((303 + n_copies))
check "shard --keep-duplicates: duplicates_skipped 0" test "$(manifest_count "$T/keep" duplicates_skipped)" = 0
check "shard --keep-duplicates: kept documents split by their name" \
    test -z "$(comm -23 <(splits_of "$T/keep" | grep -v '^copy-') "$T/split_full.txt")"
# a transposed copy: every pitched Pitch token two semitones up (Pitch_21..106 -> +2), drums left alone
head -n 3 "$T/sub.txt" | awk -F'\t' '{ n = split($2, a, " "); drum = 0; out = ""
    for (i = 1; i <= n; i++) { t = a[i]; if (t ~ /^Program_/) drum = (t == "Program_-1")
        if (t ~ /^Pitch_/ && !drum) t = "Pitch_" (substr(t, 7) + 2); out = out (i > 1 ? " " : "") t }
    print "up2/" NR ".mid\t" out }' >"$T/up2.txt"
check "the transposed copies stay in the pitch range" test -z "$(grep -Eo 'Pitch_(109|110)' "$T/up2.txt")"
cat "$T/dups.txt" "$T/up2.txt" >"$T/dups_up2.txt"
expect "shard --transposed-duplicates exits 0" 0 "$SHARD" -o "$T/tdups" --transposed-duplicates "$T/dups_up2.txt"
check "shard --transposed-duplicates: 3 transposed and $n_copies exact counted" \
    test "$(manifest_count "$T/tdups" transposed_duplicates_skipped):$(manifest_count "$T/tdups" duplicates_skipped)" = "3:$n_copies"
check "shard --transposed-duplicates: summary names them" grep -q ", 3 transposed duplicates skipped" "$T/err"
expect "shard without --transposed-duplicates keeps transposed copies" 0 "$SHARD" -q -o "$T/tkeep" "$T/dups_up2.txt"
check "shard: transposed copies are not exact duplicates" test "$(splits_of "$T/tkeep" | wc -l)" = 306
bad_usage shard -o "$NEVER" --keep-duplicates --transposed-duplicates

# bad input: unknown token, special token; no file in the folder, and an earlier good run's files untouched
{ head -n 20 "$T/pop.txt"; printf 'bad/x.mid\tBar_None Frobnicate_7\n'; sed -n 21,30p "$T/pop.txt"; } >"$T/sbad.txt"
expect "shard: unknown token exits 1" 1 "$SHARD" -o "$T/sbad" "$T/sbad.txt"
check "shard unknown token: one error line naming line 21 and the token" one_line "$T/err" "^shard: .*line 21.*'Frobnicate_7'"
check "shard unknown token: no file in the output folder" no_files "$T/sbad"
{ head -n 5 "$T/pop.txt"; printf 'bad/y.mid\tBar_None EOS_None\n'; } >"$T/sspecial.txt"
expect "shard: a special token inside a document exits 1" 1 "$SHARD" -o "$T/sbad" <"$T/sspecial.txt"
check "shard special token: one error line naming line 6" one_line "$T/err" "^shard: .*line 6.*EOS_None"
check "shard special token: no file in the output folder" no_files "$T/sbad"
cp -r "$T/sub" "$T/sub.before"
expect "shard over an existing run: unknown token exits 1" 1 "$SHARD" -o "$T/sub" <"$T/sbad.txt"
check "shard failed rerun: earlier files untouched, no temporaries" diff -r "$T/sub" "$T/sub.before"
printf 'a\000b.mid\t%s\n' "$GOOD" | run "$SHARD" -o "$T/snul"
check "shard: a NUL byte in a document name exits 1, one line saying so" \
    test "$rc" = 1 -a "$(grep -c 'line 1: a document name may not contain a NUL byte' "$T/err")" = 1
expect "shard --dump of a folder exits 1" 1 "$SHARD" --dump "$T/sub"
check "shard --dump of a folder: one line, 'Is a directory'" one_line "$T/err" "^shard: .*sub': Is a directory$"
# a set of shards goes into place whole: a SIGTERM in the renames waits for the last; a rename that fails (an
# immutable val.bin, where chattr works) puts the earlier ones back
expect "shard: SIGTERM while its files are renamed into place ends it by the signal" 143 \
    sh -c '"$@"' sh env HMT_TEST_SIGNAL_IN_COMMIT=1 "$SHARD" -q --seed 2 -o "$T/sub" "$T/sub.txt" # (sh: no "Terminated")
"$SHARD" -q --seed 2 -o "$T/sub2" "$T/sub.txt"
check "shard SIGTERM in the renames: every file of the new set in place, no temporaries" diff -r "$T/sub" "$T/sub2"
rm -rf "$T/sub" && cp -r "$T/sub.before" "$T/sub"
if chattr +i "$T/sub/val.bin" 2>/dev/null; then
    run "$SHARD" -q --seed 2 -o "$T/sub" "$T/sub.txt"
    chattr -i "$T/sub/val.bin"
    check "shard: a rename that fails exits 1" test "$rc" = 1
    check "shard failed rename: one error line naming val.bin" one_line "$T/err" "^shard: .*val.bin"
    check "shard failed rename: train.bin put back, nothing left over" diff -r "$T/sub" "$T/sub.before"
else
    skip 3 "chattr +i does not work here (a rename made to fail)"
fi

# corrupt shards: each read fails with exit 1, nothing on stdout and one clear line
V=$T/sh/val.bin
size=$(wc -c <"$V")
mkdir "$T/bad_sh"
head -c 100 "$V" >"$T/bad_sh/short.bin"
head -c $((size - 7)) "$V" >"$T/bad_sh/truncated.bin"
: >"$T/bad_sh/empty.bin"
cp "$V" "$T/bad_sh/magic.bin" && printf 'XXXX' | dd of="$T/bad_sh/magic.bin" bs=1 seek=0 conv=notrunc status=none
cp "$V" "$T/bad_sh/version.bin" && printf '\x07\x00\x00\x00' | dd of="$T/bad_sh/version.bin" bs=1 seek=4 conv=notrunc status=none
cp "$V" "$T/bad_sh/ndocs.bin" && printf '\xff\xff\xff\x7f' | dd of="$T/bad_sh/ndocs.bin" bs=1 seek=24 conv=notrunc status=none
cp "$V" "$T/bad_sh/token.bin" && printf '\xff\xff' | dd of="$T/bad_sh/token.bin" bs=1 seek=1030 conv=notrunc status=none
cp "$V" "$T/bad_sh/vocab.bin" && printf '\x01' | dd of="$T/bad_sh/vocab.bin" bs=1 seek=16 conv=notrunc status=none
for c in short:'too short|header' truncated:'corrupt|size' empty:'too short|header' magic:'magic' \
    version:'version' ndocs:'corrupt|size' token:'corrupt.*token' vocab:'vocabulary' missing:'[Nn]o such file'; do
    f=$T/bad_sh/${c%%:*}.bin
    expect "shard --dump of a ${c%%:*} shard exits 1" 1 "$SHARD" --dump "$f"
    check "shard --dump ${c%%:*}: nothing on stdout" empty "$T/out"
    check "shard --dump ${c%%:*}: one line giving the reason" one_line "$T/err" "^shard: [a-z].*: .*(${c#*:})"
    check "shard --dump ${c%%:*}: the error names the file" grep -qF "'$f'" "$T/err"
done

# ---- interrupted runs leave nothing behind --------------------------------------------------------

# wait_for_tmp DIR: waits up to 10 s for a *.tmp.* file in DIR
wait_for_tmp() {
    for _ in $(seq 100); do
        [ -n "$(find "$1" -name '*.tmp.*' 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    return 1
}
# interrupt SIGNAL NAME CMD...: runs CMD reading from a FIFO that stays open, feeds it $FEED, waits until CMD has a
# temporary output in $WATCH, sends SIGNAL a second later, and checks CMD died of it leaving no file in $WATCH
interrupt() {
    local sig=$1 name=$2 st
    shift 2
    rm -f "$T/fifo" && mkfifo "$T/fifo"
    # a background job starts with SIGINT ignored, and under nohup SIGHUP is ignored too; the tools respect an
    # ignored signal, so give the one under test its default back
    env --default-signal="$sig" "$@" <"$T/fifo" >/dev/null 2>"$T/sig.err" &
    BG_PID=$!
    exec 3>"$T/fifo" # holds the pipe open: CMD never sees the end of its input
    cat "$FEED" >&3
    check "$name: a temporary output exists while it runs" wait_for_tmp "$WATCH"
    sleep 1
    exec 4>&2 2>/dev/null # bash reports a job killed by a signal ("Hangup") on its stderr: not a test failure
    kill -"$sig" "$BG_PID"
    for _ in $(seq 50); do
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$BG_PID" 2>/dev/null; then
        fail "$name: still running 5 s after SIG$sig"
        kill -KILL "$BG_PID"
    fi
    wait "$BG_PID"
    st=$?
    exec 2>&4 4>&-
    BG_PID=
    exec 3>&-
    check "$name: killed by SIG$sig (status $st)" test "$st" = $((128 + $(kill -l "$sig")))
    check "$name: the output folder holds no file at all" no_files "$WATCH"
}
head -n 40 "$T/pop.txt" >"$T/feed40.txt"
FEED=$T/feed40.txt WATCH=$T/sig_shard interrupt TERM "shard -o DIR, SIGTERM" "$SHARD" -o "$T/sig_shard"
FEED=$T/feed40.txt WATCH=$T/sig_shard2 interrupt INT "shard -o DIR, SIGINT" "$SHARD" -o "$T/sig_shard2"
# remi2midi reads in blocks: blank lines after the one document make it parse and write that document
{ cat "$T/song.txt"; head -c 400000 /dev/zero | tr '\0' '\n'; } >"$T/feed_song.txt"
mkdir "$T/sig_r2m"
FEED=$T/feed_song.txt WATCH=$T/sig_r2m interrupt TERM "remi2midi -o FILE, SIGTERM" "$R2M" -o "$T/sig_r2m/out.mid"
FEED=$T/feed_song.txt WATCH=$T/sig_r2m interrupt HUP "remi2midi -o FILE, SIGHUP" "$R2M" -o "$T/sig_r2m/out.mid"

summary
