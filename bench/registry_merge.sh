#!/usr/bin/env bash
# registry_merge: adds the runs of other registries (their metrics, evals and samples with them) to one, with new run
# ids; for registries written on other machines, e.g. the slices of bench/gpu_ablation.sh on lent GPUs. A run already
# there (same experiment, seed, out_dir and started_at) is not added twice. One transaction per source.
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
CREATE TEMP TABLE map AS
  SELECT s.run_id AS old, (SELECT coalesce(max(run_id), 0) FROM main.runs) + row_number() OVER (ORDER BY s.run_id) AS new
  FROM src.runs s WHERE NOT EXISTS (SELECT 1 FROM main.runs r WHERE r.experiment IS s.experiment AND r.seed IS s.seed
                                    AND r.out_dir IS s.out_dir AND r.started_at IS s.started_at);
INSERT INTO main.runs SELECT m.new, experiment, status, config_json, started_at, finished_at, out_dir, n_params, git_rev,
  seed, threads, message, device, device_name FROM src.runs JOIN map m ON m.old = src.runs.run_id;
INSERT INTO main.metrics SELECT m.new, step, split, name, value FROM src.metrics JOIN map m ON m.old = src.metrics.run_id;
INSERT INTO main.evals SELECT m.new, name, value, created_at FROM src.evals JOIN map m ON m.old = src.evals.run_id;
INSERT INTO main.samples SELECT m.new, path, n_tokens, seed, created_at FROM src.samples JOIN map m ON m.old = src.samples.run_id;
SELECT 'registry_merge: ' || count(*) || ' runs added from $(basename "$from" | sed "s/'/''/g")' FROM map;
COMMIT;
SQL
done
