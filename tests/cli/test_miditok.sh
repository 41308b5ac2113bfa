#!/usr/bin/env bash
# test_miditok: token exchange with MidiTok 3.0.0 (issue 16). Without Python: `midi2remi --miditok-tokenizer` (its
# usage, atomic output, same bytes every time) and `shard --miditok` on hand-made MidiTok token files (flat ids,
# folders searched, tokenizer.json skipped, documents named after the files, every malformed file refused with
# no shard left behind). With MidiTok itself: a venv under build/miditok-venv gets `pip install miditok==3.0.0`
# and runs tests/ref/miditok_interop.py (the token <-> id map, decoding to the same notes, MidiTok's own token
# files through shard). Where no venv or PyPI is available those checks are counted as skipped, never passed.
# Env: BIN (tool folder, default bin), SHARED (default ../shared), MIDITOK_VENV (default build/miditok-venv).
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh
need_pop909

M2R=$B/midi2remi SHARD=$B/shard
for t in "$M2R" "$SHARD"; do check "$t is built" test -x "$t"; done

# ---- midi2remi --miditok-tokenizer ----------------------------------------------------------------

check "midi2remi --help lists --miditok-tokenizer" eval '"$M2R" --help | grep -q -- "--miditok-tokenizer FILE"'
mkdir "$T/tok"
expect "midi2remi --miditok-tokenizer FILE exits 0" 0 "$M2R" --miditok-tokenizer "$T/tok/tokenizer.json"
check "--miditok-tokenizer: nothing on stdout or stderr" eval 'empty "$T/out" && empty "$T/err"'
check "--miditok-tokenizer: only the file in its folder (no temporaries)" dir_count "$T/tok" 1
check "--miditok-tokenizer: MidiTok's REMI with 16 velocities, chords and programs" \
    eval 'grep -q "\"tokenization\": \"REMI\"" "$T/tok/tokenizer.json" && grep -q "\"num_velocities\": 16" "$T/tok/tokenizer.json" &&
          grep -q "\"use_chords\": true" "$T/tok/tokenizer.json" && grep -q "\"use_programs\": true" "$T/tok/tokenizer.json"'
expect "midi2remi --miditok-tokenizer - exits 0" 0 "$M2R" --miditok-tokenizer -
check "--miditok-tokenizer -: the same bytes on stdout" same "$T/out" "$T/tok/tokenizer.json"
expect "midi2remi --miditok-tokenizer without a file exits 2" 2 "$M2R" --miditok-tokenizer
check "--miditok-tokenizer without a file: one usage line" usage_err "$T/err" "^midi2remi: option --miditok-tokenizer needs a value$"
expect "midi2remi --miditok-tokenizer with an input too exits 2" 2 "$M2R" --miditok-tokenizer "$T/tok/x.json" "$POP/001.mid"
check "--miditok-tokenizer with an input: nothing written" test ! -e "$T/tok/x.json"
expect "midi2remi --miditok-tokenizer into a missing folder exits 1" 1 "$M2R" --miditok-tokenizer "$T/nope/tokenizer.json"
check "--miditok-tokenizer into a missing folder: one error line" one_line "$T/err" "^midi2remi: cannot create output: '.*/nope/tokenizer\.json': "

# ---- shard --miditok on hand-made token files -------------------------------------------------------

# ids of two songs as midi2remi writes them, saved as MidiTok's save_tokens does ({"ids": [...], ...})
ids_json() { "$M2R" --ids "$1" | cut -f2 | sed 's/ /, /g; s/^/{"ids": [/; s/$/], "ids_bpe_encoded": false}/'; }
mkdir -p "$T/mt/a/b" "$T/mt/empty"
ids_json "$POP/001.mid" >"$T/mt/a/001.json"
ids_json "$POP/002.mid" >"$T/mt/a/b/002.json"
printf '{"ids": [4, 173, 219, 65, 100, 120], "programs": [[0, false]]}' >"$T/mt/a/b/tiny.json"
printf '{"ids": []}' >"$T/mt/a/b/nothing.json"
"$M2R" --miditok-tokenizer "$T/mt/a/tokenizer.json" # kept beside the tokens, as users do: skipped in folders
echo 'not json' >"$T/mt/a/notes.txt"              # not *.json: not read
expect "shard --miditok FOLDER exits 0" 0 "$SHARD" -q --val 0 --test 0 -o "$T/s1" --miditok "$T/mt"
check "shard --miditok: nothing on stdout or stderr" eval 'empty "$T/out" && empty "$T/err"'
expect "shard --dump of the MidiTok shard exits 0" 0 "$SHARD" --dump "$T/s1/train.bin" --ids
check "shard --miditok: 3 documents, named after the files in byte order (tokenizer.json and the empty one left out)" \
    test "$(cut -f1 "$T/out" | tr '\n' ' ')" = "$T/mt/a/001.json $T/mt/a/b/002.json $T/mt/a/b/tiny.json "
check "shard --miditok: the ids of 001 as in the file" \
    test "$(sed -n 1p "$T/out" | cut -f2)" = "$("$M2R" --ids "$POP/001.mid" | cut -f2)"
check "shard --miditok: tiny.json's ids" test "$(sed -n 3p "$T/out" | cut -f2)" = "4 173 219 65 100 120"
check "shard --miditok: the empty file counted in the manifest" grep -q '"empty_documents_skipped": 1' "$T/s1/manifest.json"
expect "shard --miditok FILE FILE exits 0" 0 "$SHARD" -q --val 0 --test 0 -o "$T/s2" --miditok "$T/mt/a/b/tiny.json" "$T/mt/a/001.json"
check "shard --miditok FILE FILE: documents in argument order" \
    test "$("$SHARD" --dump "$T/s2/train.bin" | cut -f1 | tr '\n' ' ')" = "$T/mt/a/b/tiny.json $T/mt/a/001.json "
# the split follows the file name, as for token documents: the same seed splits a renamed folder alike
expect "shard --miditok with the default split exits 0" 0 "$SHARD" -q -o "$T/s3" --miditok "$T/mt"

expect "shard --miditok without paths exits 2" 2 "$SHARD" -o "$T/never" --miditok
check "shard --miditok without paths: one usage line" usage_err "$T/err" "^shard: --miditok needs files or folders"
expect "shard --miditok --dump exits 2" 2 "$SHARD" --dump "$T/s1/train.bin" --miditok "$T/mt"
check "shard --miditok usage errors: no output folder" test ! -e "$T/never"

# bad_file NAME CONTENT PATTERN: shard --miditok refuses the file with one line matching PATTERN and leaves the
# output folder's old shards as they were
echo old >"$T/old"
for s in train val test; do cp "$T/old" "$T/s2/$s.bin"; done
bad_file() {
    printf '%s' "$2" >"$T/mt/bad.json"
    expect "shard --miditok refuses $1 (exit 1)" 1 "$SHARD" -q -o "$T/s2" --miditok "$T/mt/a/001.json" "$T/mt/bad.json"
    check "shard --miditok, $1: one error line" one_line "$T/err" "^shard: cannot read MidiTok tokens: '.*/bad\.json': $3"
    check "shard --miditok, $1: old shards untouched, no temporaries" \
        eval 'same "$T/s2/train.bin" "$T/old" && same "$T/s2/test.bin" "$T/old" && no_tmp "$T/s2"'
}
bad_file "text that is not JSON" 'Bar_None Position_0' 'not JSON'
bad_file "JSON without ids" '{"tokens": [4, 173]}' 'no "ids" list'
bad_file "ids that are not a list" '{"ids": 4}' '"ids" is not a list'
bad_file "a list of lists (one stream per track)" '{"ids": [[4, 173], [4]]}' '"ids" is a list of lists'
bad_file "an id past the vocabulary" '{"ids": [4, 348]}' '"ids"\[1\]: expected a token id in 0\.\.347'
bad_file "a negative id" '{"ids": [-1]}' '"ids"\[0\]: expected a token id'
bad_file "a fractional id" '{"ids": [4.5]}' '"ids"\[0\]: expected a token id'
bad_file "a string id" '{"ids": ["Bar_None"]}' '"ids"\[0\]: expected a token id'
bad_file "BPE-encoded ids" '{"ids": [4, 173], "ids_bpe_encoded": true}' '"ids_bpe_encoded" is true'
bad_file "a JSON list" '[4, 173]' 'no "ids" list'
printf '{"ids": [1, 4, 173, 2]}' >"$T/mt/bad.json"
expect "shard --miditok refuses BOS/EOS inside a document (exit 1)" 1 "$SHARD" -q -o "$T/s2" --miditok "$T/mt/bad.json"
check "shard --miditok, BOS: one error line" one_line "$T/err" "^shard: bad document: '.*/bad\.json': \"ids\": special token 'BOS_None' inside a document$"
rm "$T/mt/bad.json"
expect "shard --miditok on a missing file exits 1" 1 "$SHARD" -q -o "$T/s2" --miditok "$T/mt/none.json"
check "shard --miditok, missing file: one error line" one_line "$T/err" "^shard: cannot open: '.*/none\.json': No such file or directory$"
expect "shard --miditok on a folder with no token files exits 1" 1 "$SHARD" -q -o "$T/s2" --miditok "$T/mt/empty"
check "shard --miditok, no token files: one error line" one_line "$T/err" "^shard: no MidiTok token files"
check "shard --miditok failures: old shards untouched" same "$T/s2/val.bin" "$T/old"

# ---- against MidiTok itself -------------------------------------------------------------------------

PY_CHECKS=8 # checks in tests/ref/miditok_interop.py
VENV=${MIDITOK_VENV:-build/miditok-venv}
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import miditok, symusic
from importlib.metadata import version
assert version("miditok") == "3.0.0"' 2>/dev/null; }
if ! venv_ok; then
    echo "creating $VENV with miditok==3.0.0 (pip)" >&2
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" && timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check \
        miditok==3.0.0; } >"$T/pip.log" 2>&1; then
        tail -n 3 "$T/pip.log" >&2
        rm -rf "$VENV"
    fi
fi
if venv_ok; then
    "$VENV/bin/python" -c 'from importlib.metadata import version
print(" ".join(p + " " + version(p) for p in ("miditok", "symusic", "numpy")))' >&2
    "$VENV/bin/python" tests/ref/miditok_interop.py "$B" "$POP"/00{1,2,3,4,5,6,7,8,9}.mid "$POP/010.mid" \
        "$SHARED"/data/remi-golden/synthetic/*.mid --work "$T/py" >"$T/py.out" 2>"$T/py.err"
    prc=$?
    grep -v '^ok: ' "$T/py.out"
    np=$(grep -c '^ok: ' "$T/py.out")
    nf=$(grep -c '^FAIL: ' "$T/py.out")
    n_pass=$((n_pass + np))
    n_fail=$((n_fail + nf))
    check "miditok_interop.py ran all $PY_CHECKS checks and exited 0 (exit $prc, $np passed, $nf failed)" \
        test "$prc" = 0 -a "$np" = "$PY_CHECKS"
    [ "$prc" = 0 ] || tail -n 5 "$T/py.err"
else
    skip $((PY_CHECKS + 1)) "MidiTok 3.0.0 cannot be installed here (python3 -m venv or pip install miditok==3.0.0 failed; offline?)"
fi

summary
