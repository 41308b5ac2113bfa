#!/usr/bin/env bash
# registry_merge: adds the runs of other registries (their metrics, evals and samples with them) to one, with new run
# ids; for registries written on other machines, e.g. the slices of bench/gpu_ablation.sh on lent GPUs. A run already
# there (same experiment, seed and started_at: the same run, resumed or not; out_dir may have been made relative) is
# replaced by the source's copy when that one finished no earlier (a resumed run's later status, metrics, evals and
# samples), else kept. Runs keep the out_dir they were written with: before committing a registry from another
# machine, `update runs set out_dir = substr(out_dir, instr(out_dir, 'build/'))` drops its paths.
# One transaction per source.
# Usage: bench/registry_merge.sh INTO.db FROM.db...
set -u -o pipefail
[ $# -ge 2 ] || { echo "usage: bench/registry_merge.sh INTO.db FROM.db..." >&2; exit 2; }
into=$1; shift
[ -f "$into" ] || { echo "registry_merge: $into: no such registry" >&2; exit 1; }
for from in "$@"; do
    [ -f "$from" ] || { echo "registry_merge: $from: no such registry" >&2; exit 1; }
    sqlite3 "$into" <<SQL || { echo "registry_merge: $from: not merged" >&2; exit 1; }
.bail on
ATTACH '$(printf '%s' "$from" | sed "s/'/''/g")' AS src;
BEGIN IMMEDIATE;
CREATE TEMP TABLE same AS -- runs both hold: the source's wins when it finished no earlier
  SELECT s.run_id AS old, r.run_id AS new, coalesce(s.finished_at, '') >= coalesce(r.finished_at, '') AS newer
  FROM src.runs s JOIN main.runs r ON r.experiment IS s.experiment AND r.seed IS s.seed
                                    AND r.started_at IS s.started_at;
CREATE TEMP TABLE map AS
  SELECT s.run_id AS old, (SELECT coalesce(max(run_id), 0) FROM main.runs) + row_number() OVER (ORDER BY s.run_id) AS new
  FROM src.runs s WHERE s.run_id NOT IN (SELECT old FROM temp.same);
DELETE FROM main.metrics WHERE run_id IN (SELECT new FROM temp.same WHERE newer);
DELETE FROM main.evals WHERE run_id IN (SELECT new FROM temp.same WHERE newer);
DELETE FROM main.samples WHERE run_id IN (SELECT new FROM temp.same WHERE newer);
DELETE FROM main.runs WHERE run_id IN (SELECT new FROM temp.same WHERE newer);
SELECT 'registry_merge: ' || (SELECT count(*) FROM temp.map) || ' runs added, ' ||
       (SELECT count(*) FROM temp.same WHERE newer) || ' replaced from $(basename "$from" | sed "s/'/''/g")';
INSERT INTO temp.map SELECT old, new FROM temp.same WHERE newer;
INSERT INTO main.runs SELECT m.new, experiment, status, config_json, started_at, finished_at, out_dir, n_params, git_rev,
  seed, threads, message, device, device_name FROM src.runs JOIN map m ON m.old = src.runs.run_id;
INSERT INTO main.metrics SELECT m.new, step, split, name, value FROM src.metrics JOIN map m ON m.old = src.metrics.run_id;
INSERT INTO main.evals SELECT m.new, name, value, created_at FROM src.evals JOIN map m ON m.old = src.evals.run_id;
INSERT INTO main.samples SELECT m.new, path, n_tokens, seed, created_at FROM src.samples JOIN map m ON m.old = src.samples.run_id;
COMMIT;
SQL
done
