# data: MIDI_DIR -> REMI token documents -> train/val/test shards. Included by the Makefile.
# The rule runs the tools as users would pipe them; `make -n data` prints the exact command.
MIDI_DIR ?= $(POP909)
DATA_DIR ?= data
SPLIT_SEED ?= 1

data: $(DATA_DIR)/shards/manifest.json

# shard writes train/val/test.bin and then the manifest, each atomically; the manifest is the rule's target.
# Any file midi2remi cannot read fails the rule (pipefail): fix or remove it, the message names it.
$(DATA_DIR)/shards/manifest.json: $(TOOL_BINS) | $(MIDI_DIR)
	@mkdir -p $(DATA_DIR)
	bin/midi2remi -q $(MIDI_DIR) | bin/shard --seed $(SPLIT_SEED) -o $(DATA_DIR)/shards

.PHONY: data
