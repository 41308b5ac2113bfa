#!/usr/bin/env bash
# test_report: shell tests of report (HOUSE_STYLE §2, §3, §5d; spec/formats.md §5). --help, exit codes and option
# errors; an empty registry (report gives a plain SQLite file the schema); then a registry with known rows written
# by the sqlite3 CLI: the ablation view's numbers as the CLI sees them and as the page shows them, HTML escaping,
# the SVG plots and piano roll, notes for a missing and a bad sample file, no partial output on failure, and the
# page rendered by headless Chromium (a screenshot, no console error). The sqlite3 CLI and Chromium (Debian
# packages) are installed when missing, with sudo when not root; if that fails the test fails, it never skips.
# Audio (issue 16): a run folder with samples and eval study documents rendered by bin/render; the page plays each
# sample beside its piano roll and the study pairs side by side, from copies beside the page (relative paths); the
# page's folder, moved elsewhere with the run folder gone, loads every <audio> in headless Chromium (readyState >= 1,
# duration > 0) with no console message. Those checks need fluidsynth and sox (installed when missing); where
# they cannot be installed they are counted as skipped.
# Env: BIN (tool folder, default bin) and SHARED (default ../shared), relative to the repository root unless absolute.
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

REPORT=$B/report
check "$REPORT is built" test -x "$REPORT"

# deb_install CMD PACKAGE: installs the Debian package when CMD is missing; fails (never skips) when it cannot
deb_install() {
    command -v "$1" >/dev/null && return 0
    echo "installing Debian package $2" >&2
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2"; } >"$T/apt.log" 2>&1
    command -v "$1" >/dev/null && return 0
    fail "Debian package $2 could not be installed (offline?); this test needs it" "$(tail -n 3 "$T/apt.log")"
    return 1
}
deb_install sqlite3 sqlite3 || summary

# ---- usage ------------------------------------------------------------------------------------

for h in -h --help; do
    expect "report $h exits 0" 0 "$REPORT" $h
    check "report $h prints usage on stdout" grep -q "^Usage: report " "$T/out"
    check "report $h leaves stderr empty" empty "$T/err"
done
check "report --help lists its options" grep -q -e '--registry FILE' -e '-o FILE' -e '--samples N' "$T/out"
NEVER=$T/never
bad_usage() { usage_case "$REPORT" "$@"; }
bad_usage --no-such-option
check "report: an unknown option is named" usage_err "$T/err" "^report: unknown option: '--no-such-option'$"
bad_usage -o
bad_usage --registry
bad_usage --samples 101 -o "$NEVER/r.html"
bad_usage --samples x -o "$NEVER/r.html"
bad_usage --samples -1
bad_usage -o "$NEVER/r.html" extra
check "usage errors create no output" no_files "$NEVER"

# ---- failures leave no output -------------------------------------------------------------------

mkdir "$T/o"
expect "report: a missing registry exits 1" 1 "$REPORT" --registry "$T/nope.db" -o "$T/o/r.html"
check "report missing registry: one error line naming it" \
    one_line "$T/err" "^report: registry '.*/nope\.db': cannot open: No such file or directory$"
check "report missing registry: no registry created" test ! -e "$T/nope.db"
check "report missing registry: no output" no_files "$T/o"
printf 'this is not a database, but it is long enough to look like a header of one...............\n' >"$T/junk.db"
echo old >"$T/o/r.html"
expect "report: a file that is not a registry exits 1" 1 "$REPORT" --registry "$T/junk.db" -o "$T/o/r.html"
check "report junk registry: one error line naming it" one_line "$T/err" "^report: registry '.*/junk\.db': "
check "report junk registry: the existing output is untouched" same "$T/o/r.html" <(echo old)
check "report junk registry: no temporaries" no_tmp "$T/o"
sqlite3 "$T/other.db" 'CREATE TABLE foo(x); INSERT INTO foo VALUES (1)'
cp "$T/other.db" "$T/other.before"
expect "report: a database that is no registry exits 1" 1 "$REPORT" --registry "$T/other.db" -o "$T/o/r.html"
check "report other database: one error line saying so" one_line "$T/err" "^report: registry '.*/other\.db': not a registry"
check "report other database: left as it was" same "$T/other.db" "$T/other.before"

# ---- an empty registry --------------------------------------------------------------------------

REG=$T/reg.db
sqlite3 "$REG" 'VACUUM' # a plain SQLite file: report gives it the schema
expect "report on an empty registry exits 0" 0 "$REPORT" --registry "$REG" -o "$T/empty.html"
check "report empty: nothing on stdout or stderr" eval 'empty "$T/out" && empty "$T/err"'
check "report empty: the page says there are no runs" grep -q 'No runs in the registry' "$T/empty.html"
check "report empty: the page is complete" grep -q '</html>' "$T/empty.html"
SCHEMA=$(sed -n 's/^#define REG_SCHEMA_VERSION \([0-9]*\).*/\1/p' libcommon/registry.h)
check "report empty: the registry got the current schema (version $SCHEMA)" test "$(sqlite3 "$REG" 'PRAGMA user_version')" = "$SCHEMA"

# ---- a registry with known rows -----------------------------------------------------------------

GOLD=$SHARED/data/remi-golden/pop909/001.tokens
if [ ! -s "$GOLD" ]; then
    fail "test data: $GOLD (SHARED='$SHARED')"
    summary
fi
printf 'pop909/001.mid\t%s\n' "$(tr '\n' ' ' <"$GOLD" | sed 's/ $//')" >"$T/sample1.txt"
n_notes=$(grep -c '^Pitch_' "$GOLD")
printf 'bad\tBar_None Frobnicate_7\n' >"$T/bad.txt"

HG='{"model":{"type":"hourglass","updown_sample_type":"linear","attn_resampling":true,"shorten_factor":3,"depth":[2,4,2]}}'
VAN='{"model":{"type":"vanilla","depth":[8]}}'
EXP_ESC='a<b>&"c"' # a name that needs escaping in HTML
{
    echo "BEGIN;"
    # run_id experiment seed status config wall_s best_val tokens/s
    while read -r id exp seed status cfg wall best tps; do
        exp=${exp//@/ }
        echo "INSERT INTO runs(run_id, experiment, status, config_json, started_at, finished_at, out_dir, n_params, seed)"
        echo " VALUES ($id, '$exp', '$status', '$cfg', '2024-01-01T00:00:00Z',"
        echo " strftime('%Y-%m-%dT%H:%M:%SZ', '2024-01-01', '+$wall seconds'), 'runs/r$id', 1000, $seed);"
        [ "$best" = - ] && continue
        for step in 10 20 30 40 50 60 70 80 90 100; do
            echo "INSERT INTO metrics VALUES ($id, $step, 'train', 'loss', 5 - $step / 40.0 + $seed / 10.0);"
            echo "INSERT INTO metrics VALUES ($id, $step, 'train', 'tokens_per_s', $tps);"
        done
        echo "INSERT INTO metrics VALUES ($id, 50, 'val', 'loss', $best + 0.3), ($id, 100, 'val', 'loss', $best);"
    done <<EOF
1 hg-linear 1 done $HG 100 2.0 1000
2 hg-linear 2 done $HG 200 2.2 1100
3 hg-linear 3 done $HG 300 2.4 1200
4 $EXP_ESC 1 done $VAN 50 3.5 900
5 hg-linear 4 failed $HG 10 0.5 5000
6 hg-linear 5 running $HG 0 - -
EOF
    # run perplexity accuracy pitch_class_kl duration_kl velocity_kl validity
    while read -r id ppl acc pkl dkl vkl val; do
        echo "INSERT INTO evals(run_id, name, value) VALUES ($id, 'test_perplexity', $ppl), ($id, 'test_accuracy', $acc),"
        echo " ($id, 'pitch_class_kl', $pkl), ($id, 'duration_kl', $dkl), ($id, 'velocity_kl', $vkl), ($id, 'validity', $val);"
    done <<EOF
1 8 0.5 0.1 0.05 0.3 1
2 9 0.6 0.2 0.05 0.3 0.9
3 10 0.7 0.3 0.05 0.3 0.8
5 1 0.99 0 0 0 1
EOF
    echo "INSERT INTO samples(run_id, path, n_tokens, seed) VALUES (1, '$T/sample1.txt', 7026, 1),"
    echo " (1, '$T/missing.txt', 10, 2), (4, '$T/bad.txt', 2, 1);"
    echo "COMMIT;"
} >"$T/rows.sql"
check "sqlite3 CLI writes the known rows" sqlite3 "$REG" ".read $T/rows.sql"

# the ablation view as users see it in the sqlite3 CLI (sqrt() included)
sq() { sqlite3 -separator ' ' "$REG" "$1"; }
check "ablation (CLI): one row per experiment with a finished run" test "$(sq 'SELECT count(*) FROM ablation')" = 2
check "ablation (CLI): 3 runs, 3 seeds of hg-linear; failed and running runs excluded" \
    test "$(sq "SELECT n_runs, n_seeds FROM ablation WHERE experiment = 'hg-linear'")" = "3 3"
check "ablation (CLI): val loss 2.2 +- 0.2" test "$(sq "SELECT printf('%.9f %.9f', val_loss_mean, val_loss_sd)
    FROM ablation WHERE experiment = 'hg-linear'")" = "2.200000000 0.200000000"
check "ablation (CLI): perplexity 9 +- 1, accuracy 0.6 +- 0.1, tokens/s 1100 +- 100, wall 200 +- 100 s" \
    test "$(sq "SELECT printf('%.6f %.6f %.6f %.6f %.3f %.3f %.3f %.3f', test_perplexity_mean, test_perplexity_sd,
    test_accuracy_mean, test_accuracy_sd, train_tokens_per_s_mean, train_tokens_per_s_sd, wall_s_mean, wall_s_sd)
    FROM ablation WHERE experiment = 'hg-linear'")" = "9.000000 1.000000 0.600000 0.100000 1100.000 100.000 200.000 100.000"
check "ablation (CLI): a single run has sd NULL" \
    test "$(sq "SELECT n_runs, val_loss_mean, val_loss_sd IS NULL FROM ablation WHERE model_type = 'vanilla'")" = "1 3.5 1"

# ---- the report -----------------------------------------------------------------------------------

mkdir "$T/results"
expect "report exits 0" 0 "$REPORT" --registry "$REG" -o "$T/results/report.html"
H=$T/results/report.html
check "report -o: nothing on stdout" empty "$T/out"
check "report: one stderr line per sample it cannot draw" n_lines "$T/err" 2
check "report: the missing sample is named on stderr" grep -q "^report: sample: '.*/missing\.txt': No such file or directory$" "$T/err"
check "report: the bad sample is named on stderr" grep -q "^report: sample: '.*/bad\.txt': .*Frobnicate_7" "$T/err"
check "report: only the page in the output folder" dir_count "$T/results" 1
expect "report to stdout exits 0" 0 "$REPORT" --registry "$REG"
check "report: stdout holds the same page as -o (no timestamps)" same "$T/out" "$H"

# table ID: the rows of the table with that id, one per line
table() { sed -n "/<table id=\"$1\">/,/<\/table>/p" "$H" | grep '^<tr><td'; }
check "results table: one row per run" test "$(table results-table | wc -l)" = 6
check "ablation table: one row per experiment with a finished run" test "$(table ablation-table | wc -l)" = 2
row=$(table ablation-table | grep '<td>hg-linear</td>')
has() { case "$row" in *"$1"*) return 0 ;; esac; return 1; }
check "ablation table: hg-linear, 3 runs and 3 seeds" has '<td class="num">3</td><td class="num">3</td>'
check "ablation table: val loss 2.2 ± 0.2" has '>2.2 ± 0.2<'
check "ablation table: test perplexity 9 ± 1" has '>9 ± 1<'
check "ablation table: test accuracy 0.6 ± 0.1" has '>0.6 ± 0.1<'
check "ablation table: pitch-class KL 0.2 ± 0.1" has '>0.2 ± 0.1<'
check "ablation table: duration KL 0.05 ± 0" has '>0.05 ± 0<'
check "ablation table: validity 0.9 ± 0.1" has '>0.9 ± 0.1<'
check "ablation table: train tokens/s 1100 ± 100" has '>1100 ± 100<'
check "ablation table: wall time 200 ± 100" has '>200 ± 100<'
row=$(table ablation-table | grep 'vanilla')
check "ablation table: a single run shows its mean without ± sd" has '>3.5<'
check "ablation table: no sd for a single run" eval '! has "3.5 ±"'
check "HTML: the experiment name is escaped" grep -q 'a&lt;b&gt;&amp;&quot;c&quot;' "$H"
check "HTML: the raw name never appears" eval "! grep -qF '$EXP_ESC' '$H'"
check "HTML: the page holds no script and no external reference" eval "! grep -Eqi '<script|(src|href)=\"(https?:|//)' '$H'"

# the plots: per experiment val loss over seeds (2), per run with loss metrics (5), ablation bars (9 metrics)
count() { grep -o "$1" "$H" | wc -l; }
check "plots: 7 loss plots, got $(count '<svg class="plot"')" test "$(count '<svg class="plot"')" = 7
check "plots: 9 ablation bar charts, got $(count '<svg class="bars"')" test "$(count '<svg class="bars"')" = 9
check "plots: one per-seed dot chart of best val loss" test "$(count '<svg class="dots"')" = 1
check "plots: one dot per finished run (4), got $(count '<circle class="dot"')" test "$(count '<circle class="dot"')" = 4
check "plots: error bars on the 3-seed bars" test "$(count '<path class="err"')" -ge 9
check "plots: the seeds' val loss has a min-max band and a mean" eval "grep -q 'min-max of 3 runs' '$H' && grep -q '>mean<' '$H'"
check "plots: axis labels and legends" eval "grep -q '>step</text>' '$H' && grep -q '>train loss</text>' '$H'"
check "piano roll: one, for the readable sample" test "$(count '<svg class="pianoroll"')" = 1
check "piano roll: one rectangle per note ($n_notes)" test "$(count '<rect class="note"')" = "$n_notes"
check "piano roll: titled with the document name and note count" grep -q "pop909/001.mid: $n_notes notes" "$H"
check "note: the missing sample" grep -q "Sample &#39;.*/missing.txt&#39;: cannot open: No such file or directory" "$H"
check "note: the bad sample" grep -q "Sample &#39;.*/bad.txt&#39;: cannot read: .*Frobnicate_7" "$H"
check "note: the running run without metrics" grep -q 'No loss metrics logged' "$H"
expect "report --samples 0 exits 0" 0 "$REPORT" --registry "$REG" --samples 0 -o "$T/nosamples.html"
check "report --samples 0: no piano roll, no warning" eval "! grep -q pianoroll '$T/nosamples.html' && empty '$T/err'"

# a long curve is thinned to at most 1500 points (plus the last) and non-finite values are left out
sqlite3 "$REG" "INSERT INTO runs(run_id, experiment, status) VALUES (7, 'long', 'running');
    WITH RECURSIVE s(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM s WHERE k < 5000)
    INSERT INTO metrics SELECT 7, k, 'train', 'loss', 1.0 / k FROM s;
    INSERT INTO metrics VALUES (7, 5001, 'train', 'loss', 9e999), (7, 5002, 'train', 'loss', -9e999);"
expect "report with a 5000-point curve exits 0" 0 "$REPORT" --registry "$REG" -o "$H"
n_pts=$(sed -n '/<h3 id="run-7">/,/<\/svg>/p' "$H" | grep '<polyline' | tr ' ' '\n' | grep -c ',')
check "a 5000-point curve is drawn with 1000..1501 points, got $n_pts" test "$n_pts" -ge 1000 -a "$n_pts" -le 1501
check "non-finite values are left out of the SVG" eval "! grep -Eqi 'nan|inf' <(grep -E '<(polyline|circle|rect|line) ' '$H')"

# ---- rendered by headless Chromium ----------------------------------------------------------------

if deb_install chromium chromium; then
    mkdir -p "$T/home"
    HOME=$T/home timeout 180 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
        --screenshot="$T/shot.png" --window-size=1200,2000 --enable-logging=stderr --v=0 "file://$H" \
        >"$T/chrome.out" 2>"$T/chrome.err"
    crc=$?
    check "chromium renders the page (exit $crc)" test "$crc" = 0
    check "chromium: a PNG screenshot" eval "[ \"\$(head -c 4 '$T/shot.png' | od -An -c | tr -d ' ')\" = '211PNG' ]"
    check "chromium: the screenshot is not blank (> 20 kB)" test "$(stat -c %s "$T/shot.png" 2>/dev/null || echo 0)" -gt 20000
    check "chromium: no console message (SVG attribute errors are console errors)" \
        eval "! grep -q ':CONSOLE' '$T/chrome.err'"
    grep ':CONSOLE' "$T/chrome.err" | head -n 5
fi

# ---- audio: samples and eval study documents ------------------------------------------------------

N_AUDIO=24 # the checks below
if ! command -v chromium >/dev/null || ! deb_try fluidsynth fluidsynth sox timgm6mb-soundfont || ! deb_try sox sox; then
    skip "$N_AUDIO" "audio: chromium, fluidsynth or sox missing and not installable here"
    summary
fi
R8=$T/runs/r8
mkdir -p "$R8"
# doc NAME SONG N: the first N tokens of a POP909 song's golden tokens as a document named NAME
doc() { printf '%s\t%s\n' "$1" "$(head -n "$3" "$SHARED/data/remi-golden/pop909/$2.tokens" | tr '\n' ' ' | sed 's/ $//')"; }
{ doc sample_1 003 120; doc sample_2 004 160; doc sample_3 005 100; } >"$R8/samples.txt"
{ doc pop/x-original 006 200; doc pop/x-generated 006 120; doc pop/y-original 007 200; doc pop/y-generated 007 140; } >"$R8/study.txt"
"$B/remi2midi" -q -O "$R8/midi" <"$R8/samples.txt" && "$B/remi2midi" -q -O "$R8/study" <"$R8/study.txt"
rendered=0
for f in "$R8"/midi/sample_[12].mid "$R8"/study/x-*.mid "$R8"/study/y-original.mid; do # sample_3, y-generated: none
    "$B/render" -q -o "${f%.mid}.ogg" "$f" && rendered=$((rendered + 1))
done
check "audio: bin/render made 5 files" test "$rendered" = 5
REG2=$T/reg2.db
sqlite3 "$REG2" "PRAGMA user_version" >/dev/null
"$REPORT" --registry "$REG2" -o "$T/unused.html" 2>/dev/null # gives the file the schema
sqlite3 "$REG2" "INSERT INTO runs(run_id, experiment, status, out_dir, seed) VALUES (3, 'heard', 'done', '$R8', 1);
    INSERT INTO samples(run_id, path, n_tokens, seed) VALUES (3, '$R8/samples.txt', 380, 1);"
mkdir "$T/res"
expect "report with audio exits 0" 0 "$REPORT" --registry "$REG2" -o "$T/res/report.html"
check "report with audio: nothing on stderr" empty "$T/err"
A=$T/res/report.html
srcs() { grep -o '<audio controls preload="metadata" src="[^"]*"' "$1" | sed 's/.*src="//; s/"$//'; }
check "audio: 5 players (sample_3 and y-generated have no audio), got $(srcs "$A" | wc -l)" test "$(srcs "$A" | wc -l)" = 5
check "audio: every player refers to a copy beside the page, by relative path" test "$(srcs "$A" | tr '\n' ' ')" = \
    "audio/run-3/sample_1.ogg audio/run-3/sample_2.ogg audio/run-3/study/x-original.ogg audio/run-3/study/x-generated.ogg audio/run-3/study/y-original.ogg "
check "audio: the copies equal the rendered files" eval 'same "$T/res/audio/run-3/sample_1.ogg" "$R8/midi/sample_1.ogg" &&
    same "$T/res/audio/run-3/study/x-generated.ogg" "$R8/study/x-generated.ogg"'
check "audio: only the page and audio/ in the output folder, no temporaries" eval 'dir_count "$T/res" 2 && no_tmp "$T/res"'
check "audio: piano rolls of the 3 samples and the 4 study documents" test "$(grep -c '<svg class="pianoroll"' "$A")" = 7
check "audio: each sample's player follows its piano roll" \
    eval '[ "$(grep -A1 "pianoroll" "$A" | grep -c "sample_1: ")" -ge 1 ] && grep -Pzo "(?s)<div class=\"sample\">\n<svg class=\"pianoroll\".*?</svg>\n<audio [^>]*sample_1\.ogg" "$A" >/dev/null'
check "audio: the study's 2 pairs, side by side" test "$(grep -c '<div class="pair">' "$A")" = 2
check "audio: a pair holds the original then the generated document" \
    eval 'grep -Pzo "(?s)<div class=\"pair\">\n<div>\n<svg[^>]*>.{0,400}pop/x-original: .*?x-original\.ogg.*?</div>\n<div>\n<svg.{0,400}pop/x-generated: " "$A" >/dev/null'
check "audio: each pair is introduced with its prompt's length (the tokens both documents share)" eval '
    grep -q "^<p>pop/x: the same prompt (the first 120 tokens, to bar " "$A" && grep -q "^<p>pop/y: the same prompt (the first 140 tokens, to bar " "$A"'
check "audio: the prompt's end marked on both rolls of each pair" test "$(grep -c '<line class="mark"' "$A")" = 4
check "audio: the two rolls of a pair share their time axis" eval '
    [ "$(grep -o "pop/x-original: [0-9]* notes, [0-9]* bars" "$A" | grep -o "[0-9]* bars")" = "$(grep -o "pop/x-generated: [0-9]* notes, [0-9]* bars" "$A" | grep -o "[0-9]* bars")" ]'
check "audio: the page still holds no script and no external reference" eval "! grep -Eqi '<script|(src|href)=\"(https?:|//)' '$A'"
expect "report with audio to stdout exits 0" 0 "$REPORT" --registry "$REG2"
check "audio on stdout: the players refer to the files where they are" \
    test "$(srcs "$T/out" | head -1)" = "$R8/midi/sample_1.ogg"
expect "report --samples 1 exits 0" 0 "$REPORT" --registry "$REG2" --samples 1 -o "$T/res1.html"
check "report --samples 1: one sample and the study, 4 players" test "$(srcs "$T/res1.html" | wc -l)" = 4

# the page's folder moved elsewhere, the run folder gone: every player loads in Chromium
mv "$T/res" "$T/moved" && mv "$R8" "$T/gone"
P=$T/moved/probe.html
sed 's|</body></html>||' "$T/moved/report.html" >"$P"
cat >>"$P" <<'PROBE'
<script>
(function () {
  var a = Array.prototype.slice.call(document.querySelectorAll('audio')), left = a.length;
  function report() {
    var out = document.createElement('pre');
    out.id = 'audio-probe';
    out.textContent = '\n' + a.map(function (x) {
      return 'probe ' + x.getAttribute('src') + ' ' + x.readyState + ' ' + x.duration + ' ' + (x.error ? x.error.code : 0);
    }).join('\n') + '\n';
    document.body.appendChild(out);
  }
  function done() { if (--left === 0) report(); }
  if (!left) report();
  a.forEach(function (x) {
    if (x.readyState >= 1) done();
    else { x.addEventListener('loadedmetadata', done, {once: true}); x.addEventListener('error', done, {once: true}); }
  });
})();
</script>
</body></html>
PROBE
HOME=$T/home timeout 180 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome2" \
    --virtual-time-budget=30000 --enable-logging=stderr --v=0 --dump-dom "file://$P" >"$T/dom.html" 2>"$T/chrome2.err"
crc=$?
check "chromium loads the moved page with its audio (exit $crc)" test "$crc" = 0
grep '^probe ' "$T/dom.html" | sed 's/^/      /'
check "chromium: 5 audio elements probed" test "$(grep -c '^probe ' "$T/dom.html")" = 5
check "chromium: every audio element has metadata (readyState >= 1), duration > 0 and no error" \
    eval '[ "$(grep "^probe " "$T/dom.html" | awk "\$3 >= 1 && \$4 > 0 && \$4 != \"NaN\" && \$5 == 0" | wc -l)" = 5 ]'
check "chromium: the durations are the files' (within 0.1 s)" eval '(
    for f in sample_1 sample_2 study/x-original study/x-generated study/y-original; do
        d=$(grep "^probe audio/run-3/$f.ogg " "$T/dom.html" | cut -d" " -f4)
        awk -v a="$d" -v b="$(soxi -D "$T/moved/audio/run-3/$f.ogg")" "BEGIN { exit !(a - b < 0.1 && b - a < 0.1) }" || exit 1
    done)'
check "chromium: no console message" eval "! grep -q ':CONSOLE' '$T/chrome2.err'"
grep ':CONSOLE' "$T/chrome2.err" | head -n 5

summary
