#!/usr/bin/env bash
# ablation_table: the ablation's table from a registry, as the README gives it: per experiment (its finished runs),
# the best val loss as mean, sample sd and 95% interval (Student's t on n-1 degrees of freedom), Welch's t against
# the baseline experiment (with the Welch-Satterthwaite degrees of freedom), and test perplexity mean and sd.
# Markdown on stdout, best val loss first.
# Usage: bench/ablation_table.sh [REGISTRY (results/registry.db)] [BASELINE experiment name (baseline)]
# e.g. bench/ablation_table.sh build/gpu-ablation/registry.db   (runs of bench/gpu_ablation.sh)
set -u -o pipefail
reg=${1:-results/registry.db}
base=${2:-baseline}
[ -f "$reg" ] || { echo "ablation_table: $reg: no such registry" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "ablation_table: needs the sqlite3 command" >&2; exit 1; }
sqlite3 -separator ' ' "$reg" "select experiment, best_val_loss, coalesce(test_perplexity, 'nan') from results
    where status = 'done' and best_val_loss is not null order by experiment, seed" |
awk -v base="$base" '
# the two-sided 95% quantile of Student t with df degrees of freedom (df rounded down; 1.96 beyond 30)
function tq(df,   q) {
    split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 " \
          "2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", q, " ")
    df = int(df)
    return df < 1 ? 0 : df <= 30 ? q[df] : 1.96
}
{ e = $1; n[e]++; s[e] += $2; ss[e] += $2 * $2; if ($3 != "nan") { np[e]++; p[e] += $3; pp[e] += $3 * $3 } }
END {
    if (!(base in n)) { printf "ablation_table: no finished runs of the baseline \"%s\"\n", base > "/dev/stderr"; exit 1 }
    for (e in n) {
        m[e] = s[e] / n[e]
        v[e] = n[e] > 1 ? (ss[e] - n[e] * m[e] * m[e]) / (n[e] - 1) : 0
        if (v[e] < 0) v[e] = 0
    }
    print "| experiment | seeds | best val loss (mean ± sd) | 95% interval | Welch t vs " base " (df) | test perplexity |"
    print "|---|---|---|---|---|---|"
    k = 0
    for (e in n) order[++k] = e
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (m[order[j]] < m[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
    for (i = 1; i <= k; i++) {
        e = order[i]; sd = sqrt(v[e]); h = n[e] > 1 ? tq(n[e] - 1) * sd / sqrt(n[e]) : 0
        ci = n[e] > 1 ? sprintf("%.4f - %.4f", m[e] - h, m[e] + h) : "-"
        if (e == base) w = "-"
        else {
            a = v[e] / n[e]; b = v[base] / n[base]
            if (a + b == 0 || n[e] < 2 || n[base] < 2) w = "-"
            else {
                df = (a + b) ^ 2 / ((n[e] > 1 ? a * a / (n[e] - 1) : 0) + (n[base] > 1 ? b * b / (n[base] - 1) : 0))
                w = sprintf("%+.2f (%.1f)", (m[e] - m[base]) / sqrt(a + b), df)
            }
        }
        pm = np[e] ? p[e] / np[e] : 0
        pv = np[e] > 1 ? (pp[e] - np[e] * pm * pm) / (np[e] - 1) : 0
        # one seed: the value bare (no spread to give)
        val = n[e] > 1 ? sprintf("%.4f ± %.4f", m[e], sd) : sprintf("%.4f", m[e])
        ppl = np[e] > 1 ? sprintf("%.3f ± %.3f", pm, sqrt(pv < 0 ? 0 : pv)) : np[e] ? sprintf("%.3f", pm) : "-"
        printf "| %s | %d | %s | %s | %s | %s |\n", e, n[e], val, ci, w, ppl
    }
}'
