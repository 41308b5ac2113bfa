#!/usr/bin/env bash
# test_train: shell tests of train (issue "train and the registry"; spec/formats.md §1, §4-6; HOUSE_STYLE §3).
# --help and usage errors; bad configs and shards refused with the file and reason; N steps straight equal k steps,
# SIGKILL, --resume, N - k steps (bitwise, 2 threads), also when the SIGKILL lands inside a checkpoint write;
# SIGINT checkpoints and marks the run interrupted; a nan stops the run as failed and keeps the last checkpoint; a
# full disk (ulimit -f) fails cleanly with the previous checkpoint intact; a tiny model learns POP909 well below
# the data's unigram entropy. train.val_max_tokens scores the same subset for every seed and across a resume;
# train.augment resumes bitwise; peak memory stays flat on a corpus 20x larger; a six-level nest resumes bitwise;
# the memory plan and its refusal; the device in the registry, cuda refused by a CPU-only build.
# Env: BIN, SHARED as in test_tools.sh. Ends with "N passed, N failed, N skipped".
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

TRAIN=$B/train
check "train is built" test -x "$TRAIN"
need_pop909
CFG=tests/data/configs
REG=$T/registry.db
q() { sqlite3 "$REG" "$1"; } # one value from the registry (the sqlite3 CLI comes with `make`'s packages)
command -v sqlite3 >/dev/null || fail "the sqlite3 CLI is installed (make installs it)"

# ---- help and usage errors -------------------------------------------------------------------------
expect "train --help exits 0" 0 "$TRAIN" --help
check "train --help: usage on stdout" grep -q '^Usage: train ' "$T/out"
check "train --help: lists its options" grep -q -e '--resume' "$T/out"
check "train --help: nothing on stderr" empty "$T/err"
expect "train with no arguments exits 2" 2 "$TRAIN"
check "train with no arguments: one error line" usage_err "$T/err" "^train: "
expect "train --bogus exits 2" 2 "$TRAIN" --bogus
check "train --bogus: named" usage_err "$T/err" "^train: unknown option: '--bogus'$"
expect "train -j 0 exits 2" 2 "$TRAIN" -c $CFG/tiny.json -d x -o y -j 0
for opt in -d -o --registry --experiment; do # an empty value is a usage error, not a path or name to try
    args=(-c $CFG/tiny.json -d x -o y)
    expect "train $opt '' exits 2" 2 "$TRAIN" "${args[@]}" "$opt" ""
    check "train $opt '': one error line" usage_err "$T/err" "^train: .*(required|needs)"
done

# ---- data: a few POP909 songs ----------------------------------------------------------------------
ls "$POP"/*.mid | head -40 | "$B/midi2remi" -q | "$B/shard" -q -o "$T/shards" --val 0.2 --test 0.1
check "shards built" test -s "$T/shards/train.bin"

# ---- refused inputs ----------------------------------------------------------------------------------
printf '{"extends": "%s/configs/base.json", "model": {"d_modle": 8}}\n' "$ROOT" >"$T/typo.json"
expect "a config with an unknown key exits 1" 1 "$TRAIN" -c "$T/typo.json" -d "$T/shards" -o "$T/r0" --registry "$REG"
check "the unknown key and its file are named" one_line "$T/err" "typo.json.*model\.d_modle: unknown key"
check "no run directory for a bad config" test ! -e "$T/r0"
# 440 nested levels: the tensors' names make a checkpoint header over safetensors' 100,000,000 bytes, which
# sample and eval could not read back: refused before training
awk -v base="$ROOT/$CFG/tiny.json" 'BEGIN { d = "1"; for (i = 0; i < 440; i++) d = "[1," d ",1]"
    printf "{\"extends\": \"%s\", \"model\": {\"depth\": %s}}\n", base, d }' >"$T/deep.json"
expect "a config whose checkpoint header passes the safetensors limit exits 1" 1 "$TRAIN" -q -c "$T/deep.json" \
    -d "$T/shards" -o "$T/r0" --registry "$REG"
check "the header's size and the limit are named" one_line "$T/err" "deep.json.*header would be [0-9]+ bytes.*100000000"
check "no run directory for a header over the limit" test ! -e "$T/r0"
expect "a registry that cannot be opened exits 1" 1 "$TRAIN" -q -c $CFG/tiny.json -d "$T/shards" -o "$T/r0" \
    --registry /proc/nonexistent/r.db
check "a registry that cannot be opened: one line naming it, no run directory" \
    test "$(grep -c "registry '/proc/nonexistent/r.db'" "$T/err")" = 1 -a ! -e "$T/r0"
expect "missing shards exit 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/none" -o "$T/r0" --registry "$REG"
check "missing shard named" one_line "$T/err" "none/train.bin"
cp -r "$T/shards" "$T/othervocab"
printf '\x01\x02\x03\x04' | dd of="$T/othervocab/train.bin" bs=1 seek=16 conv=notrunc status=none
expect "a shard of another vocabulary exits 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/othervocab" -o "$T/r0" --registry "$REG"
check "another vocabulary named" one_line "$T/err" "train.bin.*another vocabulary"

# ---- resume is bitwise: N straight = k, SIGKILL, resume, N - k ------------------------------------
# tiny.json: 40 steps, checkpoint every 10, eval every 20; trainer.state's payload (after the 1024-byte header,
# which holds the run id) and model.safetensors must be identical
expect "straight run exits 0" 0 "$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/straight" --registry "$REG"
check "straight run wrote its files" test -s "$T/straight/model.safetensors" -a -s "$T/straight/trainer.state" -a -s "$T/straight/config.json"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/killed" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
check "SIGKILL after the checkpoint at step 20 (status $?)" test $? = 137
expect "a second train into the same run without --resume exits 1" 1 "$TRAIN" -q -c $CFG/tiny.json -d "$T/shards" -o "$T/killed" --registry "$REG"
check "it says to use --resume" grep -q -e '--resume' "$T/err"
expect "--resume with another config exits 1" 1 "$TRAIN" -q --resume -c $CFG/learn.json -d "$T/shards" -o "$T/killed" --registry "$REG"
check "another config named" one_line "$T/err" "trainer.state.*another config"
expect "--resume after SIGKILL exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/killed" --registry "$REG"
check "k steps + SIGKILL + resume = N steps, bitwise" same_run "$T/straight" "$T/killed"
(HMT_TEST_KILL_IN_CHECKPOINT=30 "$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/torn" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
check "SIGKILL inside the checkpoint write at step 30 (status $?)" test $? = 137
check "the torn write left a temporary" test -n "$(ls "$T/torn" | grep '\.tmp\.')"
expect "--resume after a torn checkpoint exits 0" 0 "$TRAIN" -q -j 2 --resume -c $CFG/tiny.json -d "$T/shards" -o "$T/torn" --registry "$REG"
check "torn checkpoint: resumed from step 20, bitwise equal" same_run "$T/straight" "$T/torn"
# --recompute-ffn: linear1, ReLU and dropout again in the backward, the same bytes; a resume may drop it
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -j 2 --recompute-ffn -c $CFG/tiny.json -d "$T/shards" -o "$T/rf" \
    --registry "$REG"; exit $?) 2>/dev/null
check "--recompute-ffn: SIGKILL after the checkpoint at step 20 (status $?)" test $? = 137
expect "--recompute-ffn: resumed without it exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/rf" --registry "$REG"
check "--recompute-ffn, then without: the straight run, bitwise" same_run "$T/straight" "$T/rf"
check "the resume removed the temporary" no_tmp "$T/torn"
# a stop during a validation: --resume validates that step first (the last step's would otherwise never run)
vals() { q "select group_concat(step || ':' || printf('%.6f', value), ' ') from metrics m join runs r using (run_id)
    where r.out_dir like '%/$1' and split = 'val' and name = 'loss' order by step"; }
for at in 20 40; do
    HMT_TEST_STOP_IN_VALIDATION=$at "$TRAIN" -q -j 2 -c $CFG/tiny.json -d "$T/shards" -o "$T/vstop$at" --registry "$REG" \
        2>/dev/null
    check "a SIGTERM in the validation of step $at: interrupted, exit 1 (status $?)" test $? = 1
    check "step $at has no val loss yet ($(vals vstop$at))" test -z "$(vals vstop$at | grep -o "$at:")"
    expect "--resume after a stop in the validation of step $at exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" \
        -o "$T/vstop$at" --registry "$REG"
    check "then the val losses are the straight run's ($(vals vstop$at))" test "$(vals vstop$at)" = "$(vals straight)"
    check "and the run is the straight run, bitwise" same_run "$T/straight" "$T/vstop$at"
done
check "registry: the resumed runs are done, metrics not doubled" test "$(q "select count(*) from runs where status = 'done'
    and (out_dir like '%/killed' or out_dir like '%/torn')")" = 2 -a \
    "$(q "select count(*) from metrics m join runs r using (run_id) where r.out_dir like '%/torn' and split = 'train' and name = 'loss'")" = 8

# ---- a six-level nest (names past 127 characters; issue 13): trains, resumes bitwise -------------------------
expect "six-level nest: straight run exits 0" 0 "$TRAIN" -q -j 2 -c $CFG/nest6.json -d "$T/shards" -o "$T/nest" --registry "$REG"
(HMT_TEST_KILL_AFTER_CHECKPOINT=10 "$TRAIN" -q -j 2 -c $CFG/nest6.json -d "$T/shards" -o "$T/nest-k" --registry "$REG"; exit $?) 2>/dev/null
check "six-level nest: SIGKILL after the checkpoint at step 10 (status $?)" test $? = 137
expect "six-level nest: --resume exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/nest-k" --registry "$REG"
check "six-level nest: k steps + SIGKILL + resume = N steps, bitwise" same_run "$T/nest" "$T/nest-k"
check "six-level nest: the checkpoint holds names over 127 characters, all distinct" awk 'BEGIN { RS = "\"" }
    /^transformer\./ { n++; if (length($0) > 127) long++; if (seen[$0]++) dup++ } END { exit !(n > 100 && long > 0 && !dup) }' \
    <(head -c 200000 "$T/nest/model.safetensors" | tr -d '\0')

# ---- devices: the registry records the device; a CPU-only build asked for cuda refuses in one line -------------
check "registry: the straight run trained on the cpu, its model named" test "$(q "select device || ':' ||
    (length(device_name) > 0) from runs where out_dir like '%/straight'")" = "cpu:1"
expect "--device cuda in a CPU-only build exits 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/gpu" --registry "$REG" --device cuda
check "--device cuda: one line naming the reason" one_line "$T/err" "^train: cannot use device 'cuda': this build has no CUDA backend \(rebuild with make CUDA=1\)$"
check "--device cuda: no run directory" test ! -e "$T/gpu"
expect "--device tpu exits 2" 2 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/gpu" --device tpu
expect "--precision bf16 on the CPU exits 2" 2 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/gpu" --precision bf16
check "--precision bf16 on the CPU: named" usage_err "$T/err" "^train: --precision bf16 is for --device cuda$"
expect "--precision fp16 exits 2" 2 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/gpu" --device cuda --precision fp16
check "--precision fp16: named" usage_err "$T/err" "^train: --precision 'fp16': expected fp32, tf32 or bf16$"
check "no run directory after the usage errors" test ! -e "$T/gpu"

# ---- the memory plan: printed at start; a plan larger than the memory is refused before anything is made -------
expect "train prints its plan" 0 "$TRAIN" -j 1 -c $CFG/tiny.json -d "$T/shards" -o "$T/planned" --registry "$REG"
check "the plan names parameters, weights, gradients, Adam state and activations" grep -Eq \
    "^train: plan: [0-9]+ parameters, .*weights .*gradients .*Adam state .*activations .* for batch 4 x 64" "$T/err"
runs_before=$(q "select count(*) from runs")
HMT_MEMORY_LIMIT=1M expect "a plan over the memory limit exits 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/toobig" --registry "$REG"
check "refused in one line naming the figures" one_line "$T/err" \
    "^train: model does not fit in memory: '.*tiny.json': [0-9]+ parameters need .* \(weights .*, gradients .*, Adam state .*, activations .*\); 1 MiB available \(HMT_MEMORY_LIMIT\)$"
check "refused: no run directory" test ! -e "$T/toobig"
check "refused: no registry row" test "$(q "select count(*) from runs")" = "$runs_before"
HMT_MEMORY_LIMIT=lots expect "a malformed HMT_MEMORY_LIMIT exits 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/shards" -o "$T/toobig" --registry "$REG"
check "a malformed HMT_MEMORY_LIMIT is named" one_line "$T/err" "HMT_MEMORY_LIMIT: 'lots'"

# ---- train.val_max_tokens: a fixed validation subset, the same for every seed and across a resume -----------
# and train.augment: on-the-fly offsets that resume bitwise and change what the model sees
printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"val_max_tokens": 3000}}\n' "$ROOT" >"$T/vsub.json"
printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"val_max_tokens": 3000, "seed": 2}}\n' "$ROOT" >"$T/vsub2.json"
val_tokens() { q "select group_concat(value, ',') from (select value from metrics m join runs r using (run_id)
    where r.out_dir like '%/$1' and split = 'val' and name = 'tokens' order by step)"; }
expect "val_max_tokens run exits 0" 0 "$TRAIN" -j 2 -c "$T/vsub.json" -d "$T/shards" -o "$T/vsub" --registry "$REG"
check "val_max_tokens: the start line gives the subset" grep -Eq 'validation: [0-9]+ of [0-9]+ documents' "$T/err"
expect "val_max_tokens, seed 2, exits 0" 0 "$TRAIN" -q -j 2 -c "$T/vsub2.json" -d "$T/shards" -o "$T/vsub2" --registry "$REG"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -j 2 -c "$T/vsub.json" -d "$T/shards" -o "$T/vsubk" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
expect "val_max_tokens: --resume exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/vsubk" --registry "$REG"
VT=$(val_tokens vsub)
ALL=$(val_tokens straight)
check "val_max_tokens: tokens logged at both validations ($VT), at least the budget" \
    awk -v v="$VT" 'BEGIN { n = split(v, a, ","); exit !(n == 2 && a[1] == a[2] && a[1] >= 3000) }'
check "val_max_tokens: a subset, smaller than the whole split ($ALL)" awk -v v="$VT" -v a="$ALL" 'BEGIN { exit !(v + 0 < a + 0) }'
check "val_max_tokens: the same subset for another seed" test "$(val_tokens vsub2)" = "$VT"
check "val_max_tokens: the same subset after a resume" test "$(val_tokens vsubk)" = "$VT"
check "val_max_tokens: resumed run bitwise equal to the straight one" same_run "$T/vsub" "$T/vsubk"
check "val_max_tokens: recorded in the resolved config" grep -q '"val_max_tokens":3000' "$T/vsub/config.json"
check "a config without the new keys leaves them out of its resolved config" \
    test -z "$(grep -E 'val_max_tokens|augment' "$T/straight/config.json")"

printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"augment": {"pitch_offsets": [-6, 6], "velocity_offsets": [-2, 2]}}}\n' \
    "$ROOT" >"$T/aug.json"
expect "augmented run exits 0" 0 "$TRAIN" -q -j 2 -c "$T/aug.json" -d "$T/shards" -o "$T/aug" --registry "$REG"
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -j 2 -c "$T/aug.json" -d "$T/shards" -o "$T/augk" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
expect "augmented run: --resume exits 0" 0 "$TRAIN" -q -j 2 --resume -d "$T/shards" -o "$T/augk" --registry "$REG"
check "augmented run: k steps + SIGKILL + resume = N steps, bitwise" same_run "$T/aug" "$T/augk"
check "augmentation changes the training (weights differ from the plain run)" differ "$T/aug/model.safetensors" "$T/straight/model.safetensors"

# ---- memory independent of the corpus: the same run on a corpus 20x larger keeps its peak resident memory ----
# (train maps the shards and drops each window's pages after use; reading every token would add the 20x corpus'
# ~11 MB). The large corpus is the 40 songs under 20 names each, kept with --keep-duplicates.
if [ -x /usr/bin/time ]; then
    ls "$POP"/*.mid | head -40 | "$B/midi2remi" -q >"$T/docs40.txt"
    for k in $(seq 20); do sed "s|^[^\t]*/|copy$k/c$k-|" "$T/docs40.txt"; done >"$T/docs800.txt"
    "$B/shard" -q --keep-duplicates -o "$T/shards800" --val 0.2 --test 0.1 "$T/docs800.txt"
    small=$(du -k "$T/shards/train.bin" | cut -f1) big=$(du -k "$T/shards800/train.bin" | cut -f1)
    check "the large corpus is about 20x the small one ($small KB, $big KB)" test "$big" -ge $((15 * small))
    printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"steps": 20, "val_max_tokens": 3000}}\n' "$ROOT" >"$T/mem.json"
    rss() { /usr/bin/time -f %M -o "$T/rss" "$TRAIN" -q -j 2 -c "$T/mem.json" -d "$1" -o "$2" --registry "$REG" && cat "$T/rss"; }
    r_small=$(rss "$T/shards" "$T/mem_small") r_big=$(rss "$T/shards800" "$T/mem_big")
    check "max RSS flat on a 20x corpus: $r_small KB -> $r_big KB (tolerance 4 MB)" \
        test -n "$r_small" -a -n "$r_big" -a "${r_big:-0}" -le $((${r_small:-0} + 4096))
else
    fail "/usr/bin/time is installed (the memory check needs its %M)"
fi

# ---- SIGINT: checkpoint, interrupted, exit 1 -------------------------------------------------------------
printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"steps": 100000, "checkpoint_every": 1000}}\n' "$ROOT" >"$T/long.json"
# a background job of a script starts with SIGINT ignored, which train respects: give it the default back (set -m
# would too, but only where the shell has a terminal for job control)
env --default-signal=INT "$TRAIN" -q -j 1 -c "$T/long.json" -d "$T/shards" -o "$T/long" --registry "$REG" \
  2>"$T/long.err" &
BG_PID=$!
for _ in $(seq 100); do [ -n "$(q "select 1 from metrics m join runs r using (run_id) where r.out_dir like '%/long' limit 1")" ] && break; sleep 0.1; done
kill -INT $BG_PID
wait $BG_PID
rc=$?
BG_PID=
check "SIGINT: exit 1 (got $rc)" test $rc = 1
check "SIGINT: a checkpoint was written" test -s "$T/long/trainer.state" -a -s "$T/long/model.safetensors"
check "SIGINT: run marked interrupted" test "$(q "select status from runs where out_dir like '%/long'")" = interrupted
check "SIGINT: says how to continue" grep -q -e '--resume' "$T/long.err"

# ---- a nan stops the run as failed, the last good checkpoint kept -------------------------------------
(HMT_TEST_KILL_AFTER_CHECKPOINT=20 "$TRAIN" -q -c $CFG/tiny.json -d "$T/shards" -o "$T/nan" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
cp "$T/nan/model.safetensors" "$T/nan.before"
# a nan in the middle of the weights (past the embedding, whose PAD row a window might not reach)
printf '\x00\x00\xc0\x7f' | dd of="$T/nan/trainer.state" bs=1 seek=$((1024 + 4 * 20000)) conv=notrunc status=none
expect "a nan weight: exit 1" 1 "$TRAIN" -q --resume -d "$T/shards" -o "$T/nan" --registry "$REG"
check "a nan: one line naming it and the kept checkpoint" one_line "$T/err" "step 21: the loss is nan; the last good checkpoint \(step 20\) is kept"
check "a nan: model.safetensors untouched" same "$T/nan.before" "$T/nan/model.safetensors"
check "a nan: run marked failed with the reason" test "$(q "select status || ':' || (message like '%nan%') from runs where out_dir like '%/nan'")" = "failed:1"

# ---- a full disk: the previous checkpoint stays ---------------------------------------------------------
(HMT_TEST_KILL_AFTER_CHECKPOINT=10 "$TRAIN" -q -c $CFG/tiny.json -d "$T/shards" -o "$T/full" --registry "$REG"; exit $?) 2>/dev/null # not exec'd: the subshell takes bash's "Killed" notice
cp "$T/full/trainer.state" "$T/full.state.before"
(ulimit -f 500 && trap '' XFSZ && "$TRAIN" -q --resume -d "$T/shards" -o "$T/full" --registry "$REG" >"$T/out" 2>"$T/err")
check "full disk: exit 1" test $? = 1
check "full disk: one error line naming the file" one_line "$T/err" "trainer.state.*(File too large|No space)"
check "full disk: previous trainer.state intact" same "$T/full.state.before" "$T/full/trainer.state"
check "full disk: no temporaries" no_tmp "$T/full"
check "full disk: run marked failed" test "$(q "select status from runs where out_dir like '%/full'")" = failed

# ---- it learns: val loss well below the unigram entropy of the validation tokens ----------------------
# learn.json: d 64, T 128, 300 steps on the 40 songs' train split. The entropy counts every target the
# validation loss scores: the tokens of each document and its EOS (BOS is never a target).
"$B/shard" --dump "$T/shards/val.bin" --ids | cut -f2 | awk '{ for (i = 1; i <= NF; i++) c[$i]++; c["eos"]++; n += NF + 1 }
    END { for (k in c) { p = c[k] / n; h -= p * log(p) }; printf "%.6f\n", h }' >"$T/entropy"
expect "learn run exits 0" 0 "$TRAIN" -q -c $CFG/learn.json -d "$T/shards" -o "$T/learn" --registry "$REG"
H=$(cat "$T/entropy")
V=$(q "select min(value) from metrics m join runs r using (run_id) where r.out_dir like '%/learn' and split = 'val' and name = 'loss'")
check "val loss $V < 0.7 x unigram entropy $H" awk -v v="$V" -v h="$H" 'BEGIN { exit !(v > 0 && v < 0.7 * h) }'

summary
