#!/usr/bin/env bash
# test_pipeline: `make experiment=NAME` end to end (issue "make experiment"): data -> train -> sample + remi2midi
# and eval, two seeds, on a handful of POP909 songs with the tiny test config, everything in a temporary folder.
# Checks the registry rows of every stage, that a second make has nothing to do, that a changed config redoes
# its runs, and `make results`; a config with input_length 32 through the chain with the default variables, and
# `make continue` on a folder of three MIDI files; eval's study documents and `make hear` (audio of every run, the
# report playing it; skipped where fluidsynth and sox cannot be installed). Env: BIN, SHARED as in test_tools.sh
# (BIN=bin-san runs the sanitizer build).
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

need_pop909
mkdir -p "$T/midi" "$T/configs"
for f in $(ls "$POP"/*.mid | head -30); do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$T/midi/"; done
printf '{ "extends": "%s/tests/data/configs/tiny.json", "train": { "eval_every": 10 } }\n' "$ROOT" >"$T/configs/tiny.json"
SAN_FLAG=$([ "$(basename "$BIN")" = bin-san ] && echo SAN=1)
M=(make -s --no-print-directory $SAN_FLAG experiment=tiny CONFIG_DIR="$T/configs" RUNS_DIR="$T/runs" DATA_DIR="$T/data"
    MIDI_DIR="$T/midi" REGISTRY="$T/reg.db" STEPS=20 SEEDS="1 2" EVAL_DOCS=3 EVAL_PROMPT=32 EVAL_GEN=24 SAMPLES=2
    SAMPLE_TOKENS=64 THREADS=1)
q() { sqlite3 "$T/reg.db" "$1"; }

expect "make experiment=tiny (2 seeds)" 0 "${M[@]}"
check "shards made" test -s "$T/data/shards/train.bin"
for s in 1 2; do
    R=$T/runs/tiny/steps20-seed$s
    check "seed $s: train.done, model, eval.json, samples, MIDI" test -f "$R/train.done" -a -s "$R/model.safetensors" \
        -a -s "$R/eval.json" -a -s "$R/samples.txt" -a -s "$R/midi/sample_1.mid"
done
check "registry: 2 runs done as tiny-s20, seeds 1 and 2" test "$(q "select group_concat(seed) from runs where experiment = 'tiny-s20' and status = 'done'")" = "1,2"
check "registry: train metrics of every step logged" test "$(q "select count(distinct step) from metrics where split = 'train' and name = 'loss'")" = 4
check "registry: val loss per run" test "$(q "select count(*) from metrics where split = 'val' and name = 'loss'")" = 4
check "registry: evals of both runs" test "$(q "select count(distinct run_id) from evals where name = 'test_perplexity'")" = 2
check "registry: samples of both runs" test "$(q "select count(distinct run_id) from samples")" = 2
check "registry: ablation aggregates 2 seeds" test "$(q "select n_seeds from ablation where experiment = 'tiny-s20'")" = 2
check "registry: the run's config holds the seed" test "$(q "select json_extract(config_json, '$.train.seed') from runs order by run_id")" = $'1\n2'
expect "make results" 0 "${M[@]}" results
check "make results: both tables" grep -q 'tiny-s20' "$T/out"
check "make results: mean ± sd" grep -q '±' "$T/out"
R1=$T/runs/tiny/steps20-seed1
before=$(stat -c %Y.%y "$R1/train.done" "$R1/eval.json" "$R1/samples.txt")
n_runs=$(q "select count(*) from runs")
sleep 1
expect "a second make" 0 "${M[@]}"
check "a second make redoes nothing" test "$(stat -c %Y.%y "$R1/train.done" "$R1/eval.json" "$R1/samples.txt")" = "$before" -a "$(q "select count(*) from runs")" = "$n_runs"
touch "$T/configs/tiny.json"
expect "make after a config change" 0 "${M[@]}" SEEDS=1
check "a changed config redoes its run" test "$(stat -c %Y.%y "$R1/train.done" "$R1/eval.json" "$R1/samples.txt")" != "$before"
expect "make -n prints the commands" 0 "${M[@]}" -n
check "make -n shows train, sample, eval" grep -q 'train -c' "$T/out"

# a window of 32 through the whole chain with the default variables: eval's study and sample's lengths come from
# the model (eval: min(256, 32/2) = 16 + 16); an explicit prompt that does not fit stops make, naming the window
printf '{ "extends": "%s/tests/data/configs/tiny.json", "model": { "input_length": 32 } }\n' "$ROOT" >"$T/configs/win32.json"
M32=(make -s --no-print-directory $SAN_FLAG experiment=win32 CONFIG_DIR="$T/configs" RUNS_DIR="$T/runs" DATA_DIR="$T/data"
    MIDI_DIR="$T/midi" REGISTRY="$T/reg.db" STEPS=10 THREADS=1)
W=$T/runs/win32/steps10-seed1
expect "make experiment=win32 (input_length 32, default variables)" 0 "${M32[@]}"
check "win32: eval.json with the window's lengths" grep -q '"gen_prompt_tokens": 16, "gen_continuation_tokens": 16,' "$W/eval.json"
check "win32: 4 samples (SAMPLES) decoded to MIDI" test "$(wc -l <"$W/samples.txt")" = 4 -a -s "$W/midi/sample_4.mid"
check "win32: samples run past the window (sample slides it)" test "$(cut -f2 "$W/samples.txt" | wc -w)" -gt 128
rm "$W/eval.json"
expect "EVAL_PROMPT=32 on a window of 32 stops make" 2 "${M32[@]}" EVAL_PROMPT=32
check "the error names the window" grep -q "^eval: --prompt-tokens 32 does not fit the model's window of 32 tokens" "$T/err"
check "and leaves no eval.json" test ! -e "$W/eval.json"

# make continue: the win32 run continues every MIDI file of a folder (the reference's test.py), one document and
# one MIDI file per prompt, beside each other in the run folder
mkdir -p "$T/tunes"
for f in 007 008 009; do ln -s "$(cd "$POP" && pwd)/$f.mid" "$T/tunes/"; done
expect "make continue PROMPTS=tunes/ (3 files)" 0 "${M32[@]}" continue PROMPTS="$T/tunes/" PROMPT_TOKENS=20 CONTINUE_TOKENS=40
check "continue/tunes.txt: 3 documents named after the files" test "$(cut -f1 "$W/continue/tunes.txt" | tr '\n' ' ')" = "007 008 009 "
i=0
for f in 007 008 009; do
    i=$((i + 1))
    check "continuation of $f starts with its first 20 tokens" test "$(sed -n ${i}p "$W/continue/tunes.txt" | cut -f2 |
        tr ' ' '\n' | head -20)" = "$("$B/midi2remi" "$POP/$f.mid" | cut -f2 | tr ' ' '\n' | head -20)"
done
check "continue/tunes/: their MIDI files" test "$(ls "$W/continue/tunes" | tr '\n' ' ')" = "007.mid 008.mid 009.mid "
expect "make continue with the default lengths" 0 "${M32[@]}" continue PROMPTS="$T/tunes"
check "whole files continued (documents longer than the prompts above)" test "$(head -1 "$W/continue/tunes.txt" | cut -f2 | wc -w)" -gt 200
expect "make continue without PROMPTS exits 2" 2 "${M32[@]}" continue
check "it says what to give" grep -q 'make continue: no PROMPTS: give PROMPTS=DIR' "$T/err"
expect "make continue with a missing folder exits 2" 2 "${M32[@]}" continue PROMPTS="$T/nowhere/"
check "it names the folder" grep -q "no such file or folder: '.*nowhere/'" "$T/err"

expect "an unknown experiment is an error" 2 make -s -C "$ROOT" experiment=nope CONFIG_DIR="$T/configs"
check "it names the config folder" grep -q 'no .*nope.json' "$T/err"

# eval's study documents are written by the chain; `make hear` renders every run's MIDI files and writes the report
for s in 1 2; do
    R=$T/runs/tiny/steps20-seed$s
    check "seed $s: study.txt (prompt + original, prompt + generated pairs) and its MIDI files" \
        eval '[ -s "$R/study.txt" ] && [ $(($(wc -l <"$R/study.txt") % 2)) = 0 ] && [ "$(ls "$R"/study/*.mid | wc -l)" = "$(wc -l <"$R/study.txt")" ]'
done
N_HEAR=10 # the checks below
if deb_try fluidsynth fluidsynth sox timgm6mb-soundfont && deb_try sox sox; then
    expect "make hear (audio of both runs, then the report)" 0 "${M[@]}" hear REPORT_HTML="$T/results/report.html"
    for s in 1 2; do
        R=$T/runs/tiny/steps20-seed$s
        check "seed $s: an .ogg beside every sample and study MIDI file" eval '[ -f "$R/audio.done" ] &&
            (for f in "$R"/midi/*.mid "$R"/study/*.mid; do [ -s "${f%.mid}.ogg" ] || exit 1; done)'
    done
    # seed 1 was trained twice above (the config change): both registry runs show that folder's audio
    n_ogg=$(ls "$T"/runs/tiny/steps20-seed*/{midi,study}/*.ogg | wc -l)
    n_play=$(grep -c '<audio controls preload="metadata" src="audio/run-' "$T/results/report.html")
    # (a document without notes, which a model this young may sample, gets a note instead of silent audio)
    check "the report plays every file with music ($n_ogg files; $n_play players over 3 registry runs)" eval '(
        for f in "$T"/runs/tiny/steps20-seed*/{midi,study}/*.ogg; do
            awk -v d="$(soxi -D "$f")" "BEGIN { exit !(d < 0.05) }" && continue
            grep -q "src=\"audio/run-[0-9]*/\(study/\)\?$(basename "$f")\"" "$T/results/report.html" || exit 1; done)'
    check "every player's file is copied beside the report" eval '(for f in $(grep -o "src=\"audio/[^\"]*" "$T/results/report.html" |
        sed "s/src=\"//"); do [ -s "$T/results/$f" ] || exit 1; done)'
    a_before=$(stat -c %Y.%y "$T"/runs/tiny/steps20-seed1/midi/sample_1.ogg)
    sleep 1
    expect "a second make audio" 0 "${M[@]}" audio
    check "a second make audio renders nothing" test "$(stat -c %Y.%y "$T"/runs/tiny/steps20-seed1/midi/sample_1.ogg)" = "$a_before"
    expect "make -n audio prints the render commands" 0 "${M[@]}" -n -B audio
    # without experiment=: every finished run folder, nothing trained
    rm "$T"/runs/tiny/steps20-seed2/{audio.done,midi/sample_1.ogg}
    n_runs=$(q "select count(*) from runs")
    expect "make audio without experiment=" 0 make -s --no-print-directory $SAN_FLAG RUNS_DIR="$T/runs" \
        REGISTRY="$T/reg.db" CONFIG_DIR="$T/configs" DATA_DIR="$T/data" MIDI_DIR="$T/midi" audio
    check "make audio without experiment=: the finished runs' audio again, nothing trained" \
        test -s "$T/runs/tiny/steps20-seed2/midi/sample_1.ogg" -a "$(q "select count(*) from runs")" = "$n_runs"
else
    skip "$N_HEAR" "make hear: fluidsynth and sox (Debian) cannot be installed here"
fi

summary
