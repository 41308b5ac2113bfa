#!/usr/bin/env bash
# test_generate: shell tests of sample and eval on a briefly trained tiny model (spec/formats.md §1-2, §5).
# sample: --help and usage errors; every generated document decodes with remi2midi with nothing skipped (grammar
# on); the same seed gives the same documents and another seed others; a MIDI prompt and a token-document prompt
# start the documents; a folder and several --prompt files give one document per prompt, named after it, each
# continuing as it would alone; -o with --registry records the file. eval: the table and --json, the same numbers
# for the same seed, the lengths a window of 64 allows by default, the evals rows in the registry, --max-tokens
# scoring a subset, refused inputs; --study-out writes the study's first documents (prompt + original, prompt +
# generated) without changing a number; --device cuda refused by a CPU-only build. Env: BIN, SHARED as in test_tools.sh.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

SAMPLE=$B/sample EVAL=$B/eval
need_pop909
REG=$T/registry.db
q() { sqlite3 "$REG" "$1"; }

# ---- a tiny model, trained for a few seconds ---------------------------------------------------------
ls "$POP"/*.mid | head -40 | "$B/midi2remi" -q | "$B/shard" -q -o "$T/shards" --val 0.2 --test 0.2
expect "tiny training run" 0 "$B/train" -q -c tests/data/configs/tiny.json -d "$T/shards" -o "$T/run" --registry "$REG"

# ---- sample ------------------------------------------------------------------------------------------
for t in sample eval; do
    expect "$t --help exits 0" 0 "$B/$t" --help
    check "$t --help: usage on stdout" grep -q "^Usage: $t " "$T/out"
    expect "$t --bogus exits 2" 2 "$B/$t" --bogus
    check "$t --bogus: one error line" usage_err "$T/err" "^$t: unknown option: '--bogus'$"
    expect "$t without -m exits 2" 2 "$B/$t"
    extra=$([ $t = eval ] && echo "-d $T/shards")
    expect "$t with a missing model exits 1" 1 "$B/$t" -m "$T/none" $extra
    check "$t: missing model named in one line" one_line "$T/err" "^$t: cannot load model: .*none"
done
expect "sample --top-p 0 exits 2" 2 "$SAMPLE" -m "$T/run" --top-p 0
expect "sample --registry without -o exits 2" 2 "$SAMPLE" -m "$T/run" --registry "$REG"
expect "sample --prompt-tokens without --prompt exits 2" 2 "$SAMPLE" -m "$T/run" --prompt-tokens 5
check "sample --prompt-tokens without --prompt: says it needs --prompt" usage_err "$T/err" "needs --prompt"

expect "8 unconditional samples" 0 "$SAMPLE" -m "$T/run" -n 300 --num-samples 8 --seed 3
cp "$T/out" "$T/s3"
check "8 documents named sample_1..8" test "$(cut -f1 "$T/s3" | tr '\n' ' ')" = "sample_1 sample_2 sample_3 sample_4 sample_5 sample_6 sample_7 sample_8 "
check "documents hold tokens" all_docs "$T/s3"
check "progress on stderr only" grep -q 'tokens/s' "$T/err"
expect "remi2midi decodes all 8" 0 "$B/remi2midi" -O "$T/mid" <"$T/s3"
check "nothing skipped (grammar mask)" empty "$T/err"
check "8 MIDI files" dir_count "$T/mid" 8
expect "the same seed again" 0 "$SAMPLE" -q -m "$T/run/model.safetensors" -n 300 --num-samples 8 --seed 3
check "the same seed, the same documents (run dir or model file)" same "$T/out" "$T/s3"
expect "another seed" 0 "$SAMPLE" -q -m "$T/run" -n 300 --num-samples 8 --seed 4
check "another seed, other documents" differ "$T/out" "$T/s3"
expect "sample 1 of the batch alone" 0 "$SAMPLE" -q -m "$T/run" -n 300 --num-samples 1 --seed 3
check "a sample does not depend on its batch" test "$(cat "$T/out")" = "$(head -1 "$T/s3")"
expect "without the grammar" 0 "$SAMPLE" -q -m "$T/run" -n 300 --num-samples 8 --seed 3 --no-grammar
"$B/remi2midi" -O "$T/mid2" <"$T/out" 2>"$T/err"
check "without the grammar, tokens are skipped (the check above can fail)" grep -q skipped "$T/err"

# prompts: a MIDI file (tokenized as midi2remi does) and a token document, cut with --prompt-tokens
"$B/midi2remi" "$POP/001.mid" | cut -f2 | tr ' ' '\n' | head -50 >"$T/prompt.want"
expect "MIDI prompt" 0 "$SAMPLE" -q -m "$T/run" --prompt "$POP/001.mid" --prompt-tokens 50 -n 100
check "the document starts with the prompt's 50 tokens" test "$(cut -f2 "$T/out" | tr ' ' '\n' | head -50)" = "$(cat "$T/prompt.want")"
"$B/midi2remi" "$POP/002.mid" >"$T/prompt.txt"
expect "token-document prompt" 0 "$SAMPLE" -q -m "$T/run" --prompt "$T/prompt.txt" --prompt-tokens 30 -n 100 --ids
check "--ids prompt: the first 30 ids" test "$(cut -f2 "$T/out" | tr ' ' '\n' | head -30 | tr '\n' ' ')" = \
    "$("$B/midi2remi" --ids "$POP/002.mid" | cut -f2 | tr ' ' '\n' | head -30 | tr '\n' ' ')"
# a prompt longer than the window (64) and more new tokens than the window: the window slides, nothing breaks
"$B/midi2remi" "$POP/003.mid" | cut -f2 | tr ' ' '\n' | head -200 >"$T/prompt.want"
expect "a prompt of 200 tokens and -n 512 on a window of 64" 0 "$SAMPLE" -q -m "$T/run" --prompt "$POP/003.mid" --prompt-tokens 200
check "it starts with the prompt's 200 tokens" test "$(cut -f2 "$T/out" | tr ' ' '\n' | head -200)" = "$(cat "$T/prompt.want")"
check "and continues past the window" test "$(cut -f2 "$T/out" | wc -w)" -gt 264
# several prompts: a folder (its MIDI files, recursively, in midi2remi's order) and files; one document per prompt,
# named after it, starting with its first --prompt-tokens tokens; each continues as it would alone
mkdir -p "$T/prompts/sub"
cp "$POP/004.mid" "$T/prompts/a.mid" && cp "$POP/005.mid" "$T/prompts/b.MIDI" && cp "$POP/006.mid" "$T/prompts/sub/c.mid"
echo "not MIDI" >"$T/prompts/notes.txt"
expect "sample --prompt DIR (3 MIDI files)" 0 "$SAMPLE" -q -m "$T/run" --prompt "$T/prompts" --prompt-tokens 40 -n 60 --seed 5
cp "$T/out" "$T/dir3"
check "three documents named after the files" test "$(cut -f1 "$T/dir3" | tr '\n' ' ')" = "a b c "
i=0
for f in "$T/prompts/a.mid" "$T/prompts/b.MIDI" "$T/prompts/sub/c.mid"; do
    i=$((i + 1))
    check "document $i starts with its file's first 40 tokens" test "$(sed -n ${i}p "$T/dir3" | cut -f2 | tr ' ' '\n' | head -40)" = \
        "$("$B/midi2remi" "$f" | cut -f2 | tr ' ' '\n' | head -40)"
    check "document $i continues its prompt" test "$(sed -n ${i}p "$T/dir3" | cut -f2 | wc -w)" -gt 40
done
expect "the second prompt alone" 0 "$SAMPLE" -q -m "$T/run" --prompt "$T/prompts/b.MIDI" --prompt-tokens 40 -n 60 --seed 5
check "a prompt continues the same way alone or among others" test "$(cat "$T/out")" = "$(sed -n 2p "$T/dir3")"
expect "the folder, one document per batch" 0 "$SAMPLE" -q -m "$T/run" --prompt "$T/prompts" --prompt-tokens 40 -n 60 --seed 5 -b 1
check "the batch size does not change the documents" same "$T/out" "$T/dir3"
expect "remi2midi -O of the folder's documents" 0 "$B/remi2midi" -q -O "$T/dirmid" "$T/dir3"
check "one MIDI file per prompt, named after it" test "$(ls "$T/dirmid" | tr '\n' ' ')" = "a.mid b.mid c.mid "
expect "several --prompt files, 2 samples each" 0 "$SAMPLE" -q -m "$T/run" --prompt "$T/prompts/sub/c.mid" \
    --prompt "$T/prompt.txt" --prompt "$T/prompts/sub/c.mid" --prompt-tokens 30 -n 40 --num-samples 2 --seed 5
check "documents PROMPT_K in prompt order; a repeated name gets -2" test "$(cut -f1 "$T/out" | tr '\n' ' ')" = \
    "c_1 c_2 002_1 002_2 c-2_1 c-2_2 "
check "a token-document prompt is named after its document" grep -q $'^002_1\t' "$T/out"
check "the same prompt twice, the same documents" test "$(sed -n 1,2p "$T/out" | cut -f2)" = "$(sed -n 5,6p "$T/out" | cut -f2)"
check "the 2 samples of a prompt differ" test "$(sed -n 1p "$T/out" | cut -f2)" != "$(sed -n 2p "$T/out" | cut -f2)"
expect "--name with --prompt exits 2" 2 "$SAMPLE" -m "$T/run" --prompt "$T/prompts" --name x
check "says why" usage_err "$T/err" "^sample: --name names unprompted samples"
mkdir -p "$T/noprompts"
expect "a folder without MIDI files exits 1" 1 "$SAMPLE" -m "$T/run" --prompt "$T/noprompts"
check "names the folder" one_line "$T/err" "^sample: cannot use prompt folder: '.*noprompts': no \*\.mid"
printf 'x\tBar_None Nonsense_3\n' >"$T/bad.txt"
expect "a bad prompt exits 1" 1 "$SAMPLE" -q -m "$T/run" --prompt "$T/bad.txt"
check "the bad token is named" one_line "$T/err" "bad.txt.*Nonsense_3"
expect "sample -o with --registry" 0 "$SAMPLE" -q -m "$T/run" -n 50 --num-samples 2 -o "$T/samples.txt" --registry "$REG"
check "-o: nothing on stdout, the file written" test ! -s "$T/out" -a -s "$T/samples.txt"
check "samples row recorded for the run" test "$(q "select count(*) from samples s join runs r using (run_id) where r.out_dir like '%/run'")" = 1
printf 'not a database\n' >"$T/notdb.db"
expect "sample -o with a registry that is no database exits 1" 1 "$SAMPLE" -q -m "$T/run" -n 50 -o "$T/s2.txt" \
    --registry "$T/notdb.db"
check "a registry that is no database: one line naming it, no sample file" \
    test "$(wc -l <"$T/err")" = 1 -a ! -e "$T/s2.txt" -a -z "$(ls "$T" | grep 's2.txt.tmp')"
sqlite3 "$T/foreign.db" 'CREATE TABLE t(x)' && cp "$T/foreign.db" "$T/foreign.before"
expect "sample -o with another program's database as registry exits 1" 1 "$SAMPLE" -q -m "$T/run" -n 50 -o "$T/s2.txt" \
    --registry "$T/foreign.db"
check "another program's database: 'not a registry', left as it was, no sample file" \
    eval 'one_line "$T/err" "not a registry" && same "$T/foreign.db" "$T/foreign.before" && test ! -e "$T/s2.txt"'

# ---- devices: a CPU-only build (make test's) asked for cuda refuses in one line ---------------------------------
expect "sample --device cuda in a CPU-only build exits 1" 1 "$SAMPLE" -m "$T/run" -n 5 --device cuda
check "sample --device cuda: one line naming the reason" one_line "$T/err" "^sample: cannot use device 'cuda': this build has no CUDA backend"
check "sample --device cuda: no output" empty "$T/out"
expect "eval --device cuda in a CPU-only build exits 1" 1 "$EVAL" -m "$T/run" -d "$T/shards" --device cuda --no-registry
check "eval --device cuda: one line naming the reason" one_line "$T/err" "^eval: cannot use device 'cuda': this build has no CUDA backend"
expect "sample --device tpu exits 2" 2 "$SAMPLE" -m "$T/run" --device tpu
check "--device tpu: named" usage_err "$T/err" "^sample: --device 'tpu': expected cpu or cuda$"

# ---- eval --------------------------------------------------------------------------------------------
expect "eval" 0 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 6 --prompt-tokens 40 --gen-tokens 40 --registry "$REG"
for k in test_loss test_perplexity test_accuracy test_loss_Pitch pitch_class_kl pitch_class_kl_orig pitch_class_kl_ks_p \
    duration_kl velocity_kl chord_kl note_density_diff polyphony_diff pitch_range_diff validity in_key_gen; do
    check "eval table has $k" grep -Eq "^$k +[-0-9.na]" "$T/out"
done
check "test perplexity = exp(test loss)" awk '$1 == "test_loss" { l = $2 } $1 == "test_perplexity" { p = $2 }
    END { exit !(l > 0 && (p - exp(l)) ^ 2 < 1e-6 * p * p) }' "$T/out"
check "validity is 1 with the grammar" awk '$1 == "validity" { exit !($2 == 1) }' "$T/out"
check "evals rows in the registry" test "$(q "select count(*) from evals e join runs r using (run_id) where r.out_dir like '%/run' and name in ('test_perplexity', 'validity', 'pitch_class_kl_ks_p')")" = 3
check "results view shows the test perplexity" test -n "$(q "select test_perplexity from results join runs using (run_id) where out_dir like '%/run'")"
expect "eval --json, twice" 0 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 6 --prompt-tokens 40 --gen-tokens 40 --no-registry --json
cp "$T/out" "$T/e1"
check "--json is one object" grep -Eq '^\{"test_loss": [0-9.]+, .*"in_key_orig": [-0-9.enul]+\}$' "$T/e1"
"$EVAL" -q -m "$T/run" -d "$T/shards" -n 6 --prompt-tokens 40 --gen-tokens 40 --no-registry --json >"$T/e2"
check "eval is deterministic given the seed" same "$T/e1" "$T/e2"
# the study's lengths default to what the window allows (64: min(256, 64/2) = 32 each) and are reported
expect "eval with the default lengths on a window of 64" 0 "$EVAL" -m "$T/run" -d "$T/shards" -n 4 --no-registry --json
check "--json reports the lengths used" grep -q '"gen_prompt_tokens": 32, "gen_continuation_tokens": 32,' "$T/out"
check "stderr says which lengths" grep -q '^eval: generation study: prompt 32 + continuation 32 tokens (defaults: .*window 64$' "$T/err"
expect "eval --prompt-tokens 64 on a window of 64 exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --prompt-tokens 64 --no-registry
check "the error names the window" usage_err "$T/err" "^eval: --prompt-tokens 64 does not fit the model's window of 64 tokens"

# --study-out: the first K studied documents, prompt + original and prompt + generated, to listen to
expect "eval --study-out" 0 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 6 --prompt-tokens 40 --gen-tokens 40 --no-registry \
    --json --study-out "$T/study.txt" --study-docs 2
check "eval --study-out: the same numbers as without it" same "$T/out" "$T/e1"
check "eval --study-out: 4 documents" test "$(wc -l <"$T/study.txt")" = 4
"$B/shard" --dump "$T/shards/test.bin" >"$T/test.txt"
study_ok() { # the pairs: NAME-original is the test document's first 80 tokens, NAME-generated its first 40 then 1..40 more
    local k name src want
    for k in 1 3; do
        name=$(sed -n "${k}p" "$T/study.txt" | cut -f1)
        case $name in *-original) ;; *) return 1 ;; esac
        [ "$(sed -n "$((k + 1))p" "$T/study.txt" | cut -f1)" = "${name%-original}-generated" ] || return 1
        src=$(grep -m1 "^${name%-original}\.mid"$'\t' "$T/test.txt") || return 1
        want=$(cut -f2 <<<"$src" | tr ' ' '\n' | head -80 | tr '\n' ' ')
        [ "$(sed -n "${k}p" "$T/study.txt" | cut -f2) " = "$want" ] || return 1
        [ "$(sed -n "$((k + 1))p" "$T/study.txt" | cut -f2 | tr ' ' '\n' | head -40 | tr '\n' ' ')" = \
            "$(tr ' ' '\n' <<<"$want" | head -40 | tr '\n' ' ')" ] || return 1
        n=$(sed -n "$((k + 1))p" "$T/study.txt" | cut -f2 | wc -w)
        [ "$n" -gt 40 ] && [ "$n" -le 80 ] || return 1
    done
}
check "eval --study-out: NAME-original = the test document's first 80 tokens, NAME-generated = its 40-token prompt + up to 40" study_ok
check "eval --study-out: they decode" eval '"$B/remi2midi" -q -O "$T/study" <"$T/study.txt" && dir_count "$T/study" 4'
expect "eval --study-out with -n 0 exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" -n 0 --study-out "$T/never.txt"
expect "eval --study-docs 0 exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --study-out "$T/never.txt" --study-docs 0
expect "eval --study-docs 65 exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --study-out "$T/never.txt" --study-docs 65
check "eval --study-out usage errors: no file" test ! -e "$T/never.txt"
expect "eval --study-out into a missing folder exits 1" 1 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 6 --prompt-tokens 40 \
    --gen-tokens 40 --no-registry --study-out "$T/nope/study.txt"
check "eval --study-out into a missing folder: one error line" one_line "$T/err" "^eval: cannot create output: '.*/nope/study\.txt'"
expect "eval --split val" 0 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 0 --split val --no-registry
check "val split scored" grep -q '^test_loss' "$T/out"
# --max-tokens: a fixed subset of the test documents, every token of it once; the whole split by default
tokens_of() { grep -Eo '"test_tokens": [0-9]+' "$1" | grep -Eo '[0-9]+$'; }
ALL_TOKENS=$(tokens_of "$T/e1")
expect "eval --max-tokens 500" 0 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 0 --max-tokens 500 --no-registry --json
SUB_TOKENS=$(tokens_of "$T/out")
check "eval --max-tokens 500 scores a subset of at least 500 tokens ($SUB_TOKENS of $ALL_TOKENS)" \
    test -n "$SUB_TOKENS" -a "${SUB_TOKENS:-0}" -ge 500 -a "${SUB_TOKENS:-0}" -lt "${ALL_TOKENS:-0}"
expect "eval --max-tokens -1 exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --max-tokens -1
expect "eval --split junk exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --split junk
expect "eval --registry with --no-registry exits 2" 2 "$EVAL" -m "$T/run" -d "$T/shards" --no-registry --registry "$REG"
expect "eval of a run the registry does not know exits 1" 1 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 0 --registry "$T/other.db"
check "says which directory" one_line "$T/err" "no run in registry .*run"
expect "eval --study-out with a registry that is no database exits 1" 1 "$EVAL" -q -m "$T/run" -d "$T/shards" -n 2 \
    --study-out "$T/st2.txt" --registry "$T/notdb.db"
check "eval, a registry that is no database: one line, nothing on stdout, no study file" \
    test "$(wc -l <"$T/err")" = 1 -a ! -s "$T/out" -a ! -e "$T/st2.txt"

summary
