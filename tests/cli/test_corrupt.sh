#!/usr/bin/env bash
# test_corrupt: a corrupt or diverged model never crashes sample or eval (issue 13; `make test SAN=1` runs this
# under ASan + UBSan). A checkpoint holding a NaN weight is refused when loaded, naming the tensor and the index;
# a checkpoint with finite weights large enough to overflow the logits stops sample (naming the generation step)
# and eval (naming the window) with one line; a plan larger than the memory is refused before allocating.
# Env: BIN, SHARED as in test_tools.sh. Ends with "N passed, N failed".
set -u -o pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
cd "$ROOT" || exit 1
. tests/cli/lib/common.sh

SAMPLE=$B/sample EVAL=$B/eval
need_pop909
REG=$T/registry.db

ls "$POP"/*.mid | head -20 | "$B/midi2remi" -q | "$B/shard" -q -o "$T/shards" --val 0.2 --test 0.2
printf '{"extends": "%s/tests/data/configs/tiny.json", "train": {"steps": 5}}\n' "$ROOT" >"$T/short.json"
expect "a short training run" 0 "$B/train" -q -c "$T/short.json" -d "$T/shards" -o "$T/run" --registry "$REG"
M=$T/run/model.safetensors

# patch FILE TENSOR INDEX COUNT VALUE: writes COUNT float32 VALUEs from element INDEX of TENSOR's data
patch() {
    perl -e '
        my ($file, $name, $at, $count, $value) = @ARGV;
        open(my $f, "+<:raw", $file) or die "$file: $!";
        read($f, my $len8, 8) == 8 or die "short file";
        my $hlen = unpack("Q<", $len8);
        read($f, my $hdr, $hlen) == $hlen or die "short header";
        $hdr =~ /"\Q$name\E":\{[^}]*"data_offsets":\[(\d+),(\d+)\]/ or die "no tensor $name";
        my ($a, $b) = ($1, $2);
        die "outside $name" if $a + 4 * ($at + $count) > $b;
        seek($f, 8 + $hlen + $a + 4 * $at, 0) or die;
        print $f pack("f<", $value) x $count;
        close($f) or die;
    ' "$@"
}

# ---- a NaN weight: refused on load, naming tensor and index ------------------------------------------------
cp "$M" "$T/nan.safetensors"
check "a NaN written into linear1" patch "$T/nan.safetensors" transformer.encoder.post_transformer.layers.0.linear1.weight 7 1 NaN
expect "sample of a NaN model exits 1" 1 "$SAMPLE" -m "$T/nan.safetensors" -n 20
check "sample: one line naming the tensor and the index" one_line "$T/err" \
    "^sample: cannot load model: '.*nan.safetensors': tensor 'transformer.encoder.post_transformer.layers.0.linear1.weight': value -?nan at index 7 is not finite$"
check "sample: nothing on stdout" empty "$T/out"
expect "eval of a NaN model exits 1" 1 "$EVAL" -m "$T/nan.safetensors" -d "$T/shards" -n 2 --prompt-tokens 16 --gen-tokens 16
check "eval: one line naming the tensor" one_line "$T/err" "^eval: cannot load model: .*linear1.weight': value -?nan at index 7"
cp "$M" "$T/inf.safetensors"
patch "$T/inf.safetensors" embedding.weight 100 1 -Inf
expect "an infinite weight: sample exits 1" 1 "$SAMPLE" -m "$T/inf.safetensors" -n 20
check "an infinite weight: named" one_line "$T/err" "'embedding.weight': value -inf at index 100 is not finite$"

# ---- finite weights whose logits overflow: sample and eval stop naming the step / window ---------------------
cp "$M" "$T/huge.safetensors"
V=$(grep -ao '"Wout.weight":{[^}]*}' "$M" | grep -o 'shape":\[[0-9]*,[0-9]*' | tr -dc '0-9,' | awk -F, '{ print $1 * $2 }')
check "Wout.weight filled with 3e38" patch "$T/huge.safetensors" Wout.weight 0 "$V" 3e38
expect "sample with overflowing logits exits 1" 1 "$SAMPLE" -m "$T/huge.safetensors" -n 50 --num-samples 2
check "sample: one line naming the generation step" one_line "$T/err" \
    "^sample: generation failed: generation step 1, item 1: the logits are not finite \(.*\): a diverged or corrupt model$"
check "sample: nothing on stdout" empty "$T/out"
expect "sample -o with overflowing logits exits 1" 1 "$SAMPLE" -m "$T/huge.safetensors" -n 50 -o "$T/samples.txt"
check "sample -o: no output file" test ! -e "$T/samples.txt"
check "sample -o: no temporaries" no_tmp "$T"
expect "eval with overflowing logits exits 1" 1 "$EVAL" -m "$T/huge.safetensors" -d "$T/shards" -n 2 --prompt-tokens 16 --gen-tokens 16 \
    --no-registry
check "eval: one line naming the window" one_line "$T/err" \
    "^eval: the logits are not finite: '.*huge.safetensors': evaluation window 0: a diverged or corrupt model$"

# ---- memory: sample and eval size the decoder and activations before allocating -------------------------------
HMT_MEMORY_LIMIT=4K expect "sample over the memory limit exits 1" 1 "$SAMPLE" -m "$M" -n 20
check "sample: refused in one line" one_line "$T/err" "^sample: cannot load model: .*model does not fit in memory: [0-9]+ parameters need .*; 4 KiB available \(HMT_MEMORY_LIMIT\)$"
HMT_MEMORY_LIMIT=4K expect "eval over the memory limit exits 1" 1 "$EVAL" -m "$M" -d "$T/shards" -n 2 --prompt-tokens 16 --gen-tokens 16
check "eval: refused in one line" one_line "$T/err" "^eval: cannot load model: .*model does not fit in memory"
expect "the intact model still samples" 0 "$SAMPLE" -m "$M" -n 20 --num-samples 2
check "two documents" n_lines "$T/out" 2

summary
