#!/usr/bin/env bash
# test_train: shell tests of train (issue "train and the registry"; spec/formats.md §1, §4-6; HOUSE_STYLE §3).
# --help and usage errors; bad configs and shards refused with the file and reason; N steps straight equal k steps,
# SIGKILL, --resume, N - k steps (bitwise, 2 threads), also when the SIGKILL lands inside a checkpoint write;
# SIGINT checkpoints and marks the run interrupted; a nan stops the run as failed and keeps the last checkpoint; a
# full disk (ulimit -f) fails cleanly with the previous checkpoint intact; a tiny model learns POP909 well below
# the data's unigram entropy. Env: BIN, SHARED as in test_tools.sh. Ends with "N passed, N failed, N skipped".
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

# ---- data: a few POP909 songs ----------------------------------------------------------------------
ls "$POP"/*.mid | head -40 | "$B/midi2remi" -q | "$B/shard" -q -o "$T/shards" --val 0.2 --test 0.1
check "shards built" test -s "$T/shards/train.bin"

# ---- refused inputs ----------------------------------------------------------------------------------
printf '{"extends": "%s/configs/base.json", "model": {"d_modle": 8}}\n' "$ROOT" >"$T/typo.json"
expect "a config with an unknown key exits 1" 1 "$TRAIN" -c "$T/typo.json" -d "$T/shards" -o "$T/r0" --registry "$REG"
check "the unknown key and its file are named" one_line "$T/err" "typo.json.*model\.d_modle: unknown key"
check "no run directory for a bad config" test ! -e "$T/r0"
expect "missing shards exit 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/none" -o "$T/r0" --registry "$REG"
check "missing shard named" one_line "$T/err" "none/train.bin"
cp -r "$T/shards" "$T/othervocab"
printf '\x01\x02\x03\x04' | dd of="$T/othervocab/train.bin" bs=1 seek=16 conv=notrunc status=none
expect "a shard of another vocabulary exits 1" 1 "$TRAIN" -c $CFG/tiny.json -d "$T/othervocab" -o "$T/r0" --registry "$REG"
check "another vocabulary named" one_line "$T/err" "train.bin.*another vocabulary"

# ---- resume is bitwise: N straight = k, SIGKILL, resume, N - k ------------------------------------
# tiny.json: 40 steps, checkpoint every 10, eval every 20; trainer.state's payload (after the 1024-byte header,
# which holds the run id) and model.safetensors must be identical
payload() { tail -c +1025 "$1"; }
same_run() { cmp -s "$1/model.safetensors" "$2/model.safetensors" && cmp -s <(payload "$1/trainer.state") <(payload "$2/trainer.state"); }
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
check "the resume removed the temporary" no_tmp "$T/torn"
check "registry: the resumed runs are done, metrics not doubled" test "$(q "select count(*) from runs where status = 'done'
    and (out_dir like '%/killed' or out_dir like '%/torn')")" = 2 -a \
    "$(q "select count(*) from metrics m join runs r using (run_id) where r.out_dir like '%/torn' and split = 'train' and name = 'loss'")" = 8

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
