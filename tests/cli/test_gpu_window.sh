#!/usr/bin/env bash
# test_gpu_window: the scripts a lent GPU window runs, on the CPU, so a fault in them is found here and not in the
# window's few minutes. bench/gpu_ablation.sh (DEVICE=cpu, 1 step a run, two workers): every cell trained, evaluated
# and sampled, one tar home with the registry and each run's files; a second call trains nothing; with only the
# registry carried to a fresh machine a finished run is skipped, and a run that does not fit the budget is left for
# the next call (exit 3); a run whose train was killed after its checkpoint resumes; a missing config or tool is one
# line and exit 1. bench/gpu_session.sh without its GPU checks: the slice goes on from the committed registry and
# comes home as one tar; its headline task (bench/gpu_headline.sh, a tiny config) brings the curve home; too little
# time, an unknown task. bench/gpu_score.sh's dry run (DEVICE=cpu): its table, the same loss both ways.
# bench/registry_merge.sh: a slice's runs merged into a home registry with their metrics, evals and samples, twice
# the same as once; usage and missing files.
# Needs POP909 (SHARED) and bin/ (BIN); about a minute on 2 cores; ends "N passed, N failed, N skipped".
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh
need_pop909
deb_try sqlite3 sqlite3 || { fail "sqlite3 is installed"; summary; }

# a slice's folder as make gpu-ablation lays it out: bin/ (the tools), shards/ (12 songs: 2 long test documents for
# eval's generation study)
D=$T/abl
mkdir -p "$D/bin"
for f in train eval sample; do ln -s "$B/$f" "$D/bin/$f"; done
ls "$POP"/*.mid | sed -n 1,12p | "$B/midi2remi" -q | "$B/shard" -q -o "$D/shards" --val 0.1 --test 0.2
check "the slice's shards" test -s "$D/shards/test.bin"
q() { sqlite3 "$1" "$2"; }
lacks() { ! grep -q -- "$1" "$2"; }
status_of() { q "$D/registry.db" "select group_concat(status) from runs where experiment = '$1'"; }
# slice [VAR=VALUE...]: a call of bench/gpu_ablation.sh on the CPU, 1 step a run, its tar to $T/home
slice() { env DIR="$D" DEVICE=cpu STEPS=1 EVAL_DOCS=2 SAMPLES=1 OUT="$T/home" "$@" bash bench/gpu_ablation.sh; }

# ---- a slice: two configs, one seed, two workers ------------------------------------------------------------------
expect "a slice of 2 runs, 2 workers: exits 0 (grid complete)" 0 \
    slice ABLATION="baseline linear_attn" SEEDS=1 JOBS=2
tar -tzf "$T/home/abl.tar.gz" 2>/dev/null | sed 's|^\./||' | grep . | sort >"$T/tar"
printf '%s\n' registry.db {baseline,linear_attn}-steps1-seed1.{config.json,eval.json,samples.txt,study.txt} | sort \
    >"$T/want"
check "one tar home: the registry and 4 files a run" same "$T/tar" "$T/want"
mkdir -p "$T/got" && tar -xzf "$T/home/abl.tar.gz" -C "$T/got"
R=$T/got/registry.db
check "the tar's registry: 2 runs done, each evaluated and sampled" test "$(q "$R" "select group_concat(experiment, ' ')
    from (select experiment from runs r where status = 'done'
          and exists (select 1 from evals e where e.run_id = r.run_id)
          and exists (select 1 from samples s where s.run_id = r.run_id) order by experiment)")" = \
    "baseline-s1 linear_attn-s1"
check "each run on the CPU, seed 1" test "$(q "$R" "select count(*) from runs where device = 'cpu' and seed = 1")" = 2
check "eval.json is eval's JSON" grep -q '"test_loss"' "$T/got/baseline-steps1-seed1.eval.json"
check "samples.txt: one document" all_docs "$T/got/linear_attn-steps1-seed1.samples.txt"
check "samples.txt: just one" n_lines "$T/got/linear_attn-steps1-seed1.samples.txt" 1
check "each run's time, and its train's, eval's and sample's" \
    grep -Eq "baseline-s1 seed 1: done in [0-9]+ s \(train [0-9]+, eval [0-9]+, sample [0-9]+\)" "$T/err"

# ---- again: nothing to do -----------------------------------------------------------------------------------------
n_runs() { q "$D/registry.db" "select count(*) from runs"; }
before=$(n_runs)
expect "the same slice again: exits 0" 0 slice ABLATION="baseline linear_attn" SEEDS=1
check "it trains nothing" lacks ': train' "$T/err"
check "it says both runs are done" grep -q "2 of its runs done (now or before), 0 left" "$T/err"
check "no new registry row" test "$(n_runs)" = "$before"

# ---- a fresh machine with only the registry carried: the finished run skipped, the next one left for later -------
mv "$D/runs" "$T/runs.first"
expect "registry only, no time for a new run: exits 3 (runs left)" 3 slice ABLATION=baseline SEEDS="1 2" BUDGET_S=0
check "seed 1 skipped as finished, seed 2 left for the next call" grep -q "1 of its runs done (now or before), 1 left" \
    "$T/err"
check "nothing trained" lacks ': train' "$T/err"
check "no new registry row" test "$(n_runs)" = "$before"
rm -rf "$D/runs" && mv "$T/runs.first" "$D/runs"

# ---- a machine lost after train's checkpoint (SIGKILL, train's test hook): the next call resumes the run, then
# evaluates and samples it, in the registry's row of the first call
expect "train killed after its checkpoint: the call exits 1" 1 \
    slice ABLATION=naive SEEDS=1 HMT_TEST_KILL_AFTER_CHECKPOINT=1
check "it says train failed" grep -q "naive-s1 seed 1: train failed (status 137)" "$T/err"
check "the registry's row is not done" test "$(status_of naive-s1)" = running
expect "the next call exits 0" 0 slice ABLATION=naive SEEDS=1
check "it resumes train" grep -q "naive-s1 seed 1: train (resume)" "$T/err"
r=$D/runs/naive/steps1-seed1
check "then evaluates and samples it" test -s "$r/eval.json" -a -s "$r/samples.txt"
check "one registry row, done" test "$(status_of naive-s1)" = 'done'

# ---- failures: one line, exit 1 -----------------------------------------------------------------------------------
expect "a config that does not exist: exits 1" 1 slice ABLATION=no_such SEEDS=1
check "it says so in one line" one_line "$T/err" "configs/no_such.json: no such config"
mv "$D/bin/eval" "$T/eval.away"
expect "a tool missing: exits 1" 1 slice ABLATION=baseline SEEDS=1
check "it names the tool in one line" one_line "$T/err" "bin/eval missing"
mv "$T/eval.away" "$D/bin/eval"

# ---- bench/gpu_session.sh, a window that only goes on with the grid (no checks), on the CPU: the slice continues the
# registry of the slices so far (bench/results/ablation-h100), and everything comes home as one tar
S=$T/session
session() {
    env DIR="$S/gpu-ablation" DEVICE=cpu STEPS=1 EVAL_DOCS=2 SAMPLES=1 ABLATION=baseline SEEDS=2 GPU_SESSION_CHECK=0 \
        GPU_SESSION_PACK=none GPU_SESSION_STAGE="$S/stage" OUT="$S/home" GPU_SESSION_JOBS=1 "$@" \
        bash bench/gpu_session.sh
}
mkdir -p "$S/gpu-ablation" && cp -r "$D/bin" "$D/shards" "$S/gpu-ablation/"
expect "gpu_session without checks, an ablation slice: exits 0" 0 session SESSION_S=400
check "it says the checks are left out" grep -q "no checks or benchmarks (GPU_SESSION_CHECK=0)" "$T/out"
mkdir -p "$S/got" && tar -xzf "$S/home/gpu-session.tar.gz" -C "$S/got" &&
    tar -xzf "$S/got/gpu-ablation.tar.gz" -C "$S/got"
check "home: one tar with the slice's log and the slice's tar" test -s "$S/got/ablation.log"
h100=$(q bench/results/ablation-h100/fp32.db "select count(*) from runs where status = 'done'")
check "the slice's registry: the slices' $h100 runs so far and its own" \
    test "$(q "$S/got/registry.db" "select count(*) from runs where status = 'done'")" = $((h100 + 1))
check "its own run: baseline-s1, seed 2, on the CPU" \
    test "$(q "$S/got/registry.db" "select device from runs where experiment = 'baseline-s1' and seed = 2")" = cpu
# the headline task (bench/gpu_headline.sh) on a tiny config: the curve and its registry come home in the tar
expect "gpu_session, the headline task: exits 0" 0 session SESSION_S=400 GPU_SESSION_TASK=headline \
    CONFIG=tests/data/configs/tiny.json STEPS=4 BATCH=2 EVAL_EVERY=2
rm -rf "$S/got" && mkdir -p "$S/got" && tar -xzf "$S/home/gpu-session.tar.gz" -C "$S/got"
check "home: the curve, validated at steps 2 and 4" \
    grep -Eq '^val loss: 2:[0-9.]+ 4:[0-9.]+$' "$S/got/headline/curve.txt"
check "home: the headline run's registry, the run done" \
    test "$(q "$S/got/headline/registry.db" "select status from runs where experiment = 'tiny-s4'")" = 'done'
expect "gpu_session with too little time for a slice: exits 0" 0 session SESSION_S=100
check "it says so" grep -q "s left of SESSION_S: no ablation run" "$T/out"
expect "gpu_session with an unknown task: exits 1" 1 session SESSION_S=400 GPU_SESSION_TASK=bogus
check "it says so" grep -q "GPU_SESSION_TASK=bogus: not ablation, headline or none" "$T/out"

# ---- bench/gpu_score.sh on the CPU (its dry run: both score on the host): the table, the same loss ---------------
expect "gpu_score.sh on the CPU, 1 run: exits 0" 0 env DEVICE=cpu BIN="$B" SHARDS="$D/shards" bash bench/gpu_score.sh 1
rows='^(eval --device cpu --split val -n 0: [0-9]+ targets, median of 1 runs|  rows scored on the CPU: .* loss [0-9.]+'
rows+='|  on the host \(HMT_EVAL_HOST_SCORE=1\): .* loss [0-9.]+|  saved .*the same loss within 1e-9: yes)$'
check "its table: the val split's targets, both ways, the same loss" test "$(grep -cE "$rows" "$T/out")" = 4

# ---- bench/registry_merge.sh: the slice's runs into a home registry ---------------------------------------------
M=bench/registry_merge.sh
H=$T/home.db
cp "$R" "$H"
sqlite3 "$H" "delete from metrics where run_id in (select run_id from runs where experiment = 'linear_attn-s1');
    delete from evals where run_id in (select run_id from runs where experiment = 'linear_attn-s1');
    delete from samples where run_id in (select run_id from runs where experiment = 'linear_attn-s1');
    delete from runs where experiment = 'linear_attn-s1';"
counts() { q "$1" "select (select count(*) from runs) || ' ' || (select count(*) from metrics) || ' ' ||
    (select count(*) from evals) || ' ' || (select count(*) from samples)"; }
expect "registry_merge: exits 0" 0 bash "$M" "$H" "$R"
check "the home registry holds the slice's runs, metrics, evals and samples ($(counts "$H") vs $(counts "$R"))" \
    test "$(counts "$H")" = "$(counts "$R")"
check "linear_attn's metrics came with it" test "$(q "$H" "select count(*) from metrics m join runs r using (run_id)
    where r.experiment = 'linear_attn-s1'")" = "$(q "$R" "select count(*) from metrics m join runs r using (run_id)
    where r.experiment = 'linear_attn-s1'")"
expect "registry_merge again: exits 0" 0 bash "$M" "$H" "$R"
check "twice is once" test "$(counts "$H")" = "$(counts "$R")"
expect "registry_merge without sources: exits 2" 2 bash "$M" "$H"
check "it prints its usage" grep -q "^usage: bench/registry_merge.sh INTO.db FROM.db" "$T/err"
expect "registry_merge from a missing registry: exits 1" 1 bash "$M" "$H" "$T/none.db"
check "it names it in one line" one_line "$T/err" "registry_merge: .*none.db: no such registry"
summary
