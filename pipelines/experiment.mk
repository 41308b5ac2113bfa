# experiment: configs/NAME.json -> train -> sample (+ remi2midi) and eval, once per seed; the ablation grid; the
# results table. Included by the Makefile after data.mk. Every rule runs one tool on files, so make redoes only
# what changed, `make -n experiment=NAME` prints the exact commands, and the grid is safe under -j.
#
#   make experiment=linear_attn                 the chain for one config (seeds from SEEDS, budget from STEPS)
#   make experiment=linear_attn SEEDS="1 2 3"   once per seed, each its own run and registry row
#   make ablation [SEEDS=...] [-j2]             every config of ABLATION
#   make results                                the registry's results and ablation views as tables
#   make continue experiment=NAME PROMPTS=dir/  continue every MIDI file of dir/ with NAME's model (see below)
#   make audio [experiment=NAME]                the runs' samples and study documents as Ogg Vorbis (render)
#   make hear experiment=NAME                   the chain, its audio, then results/report.html to listen to
#
# Runs live in runs/NAME/<budget>seedS/. STEPS is the training budget: 300 steps by default (the README's reduced
# budget, about 8 minutes per run on 2 cores); STEPS= (empty) trains the config's own steps. A run that was
# interrupted is resumed (train --resume) by the next make.
# SAMPLE_TOKENS (sample -n), EVAL_PROMPT and EVAL_GEN (eval --prompt-tokens, --gen-tokens) are empty by default: the
# tool then decides from the model's window (eval: min(256, input_length/2) each; sample: 512 new tokens, sliding
# the window). Set them to pass the option; a prompt that does not fit the window is then an error naming it.
SEEDS ?= 1
STEPS ?= 300
SAMPLES ?= 4
SAMPLE_TOKENS ?=
EVAL_DOCS ?= 32
EVAL_PROMPT ?=
EVAL_GEN ?=
STUDY_DOCS ?= 3
THREADS ?= $(shell nproc 2>/dev/null || echo 2)
# --device of train, sample and eval: cuda needs the tools of `make CUDA=1` (CUDA=1 DEVICE=cuda); PRECISION=tf32 or
# bf16 is train's --precision there (TF32=1: PRECISION=tf32)
DEVICE ?= cpu
TF32 ?=
PRECISION ?= $(if $(filter 1,$(TF32)),tf32)
DEVICE_FLAG = $(if $(filter-out cpu,$(DEVICE)),--device $(DEVICE))
# $(call to_midi,DOCS,DIR): the token documents of DOCS as MIDI files in DIR, made afresh
to_midi = rm -rf $(2) && $(BIN)/remi2midi -q -O $(2) < $(1)
ABLATION ?= baseline naive linear naive_attn linear_attn shorten3 shorten4 nested cosine_ce exp_cosine_ce
CONFIG_DIR ?= configs
RUNS_DIR ?= runs
SHARDS := $(DATA_DIR)/shards
BUDGET := $(if $(STEPS),steps$(STEPS)-,)
# the registry's experiment name: the config's name, with the budget when it is not the config's own
exp_name = $(1)$(if $(STEPS),-s$(STEPS),)
run_dir = $(RUNS_DIR)/$(1)/$(BUDGET)seed$(2)

ifdef experiment
ifeq ($(wildcard $(CONFIG_DIR)/$(experiment).json),)
$(error experiment=$(experiment): no $(CONFIG_DIR)/$(experiment).json (have: $(basename $(notdir $(wildcard $(CONFIG_DIR)/*.json)))))
endif
all: experiment
endif

# The chain of one (config, seed): $(1) config name, $(2) seed.
define RUN_RULES
$(call run_dir,$(1),$(2))/run.json: $(CONFIG_DIR)/$(1).json $(wildcard $(CONFIG_DIR)/base.json)
	@mkdir -p $$(dir $$@)
	printf '{ "extends": "$(abspath $(CONFIG_DIR)/$(1).json)", "train": { "seed": $(2)%s } }\n' \
	  '$(if $(STEPS),$(comma) "steps": $(STEPS))' > $$@

# tools are order-only prerequisites: rebuilding them does not redo finished runs
$(call run_dir,$(1),$(2))/train.done: $(call run_dir,$(1),$(2))/run.json $(SHARDS)/manifest.json | $(BIN)/train
	$(BIN)/train -c $$< -d $(SHARDS) -o $$(dir $$@) --experiment $(call exp_name,$(1)) --registry $(REGISTRY) \
	  -j $(THREADS) $(DEVICE_FLAG) $(if $(PRECISION),--precision $(PRECISION)) $$$$( [ -f $$(dir $$@)trainer.state ] && echo --resume )
	touch $$@

$(call run_dir,$(1),$(2))/samples.txt: $(call run_dir,$(1),$(2))/train.done | $(BIN)/sample $(BIN)/remi2midi
	$(BIN)/sample -q $(DEVICE_FLAG) -m $$(dir $$@)$(if $(SAMPLE_TOKENS), -n $(SAMPLE_TOKENS)) --num-samples $(SAMPLES) --seed $(2) \
	  -j $(THREADS) -o $$@ --registry $(REGISTRY)
	$$(call to_midi,$$@,$$(dir $$@)midi)

$(call run_dir,$(1),$(2))/eval.json: $(call run_dir,$(1),$(2))/train.done | $(BIN)/eval
	$(BIN)/eval -q $(DEVICE_FLAG) -m $$(dir $$@) -d $(SHARDS) -n $(EVAL_DOCS) --seed $(2) -j $(THREADS) --registry $(REGISTRY) \
	  $(if $(EVAL_PROMPT),--prompt-tokens $(EVAL_PROMPT) )$(if $(EVAL_GEN),--gen-tokens $(EVAL_GEN) )--study-out \
	  $$(dir $$@)study.txt --study-docs $(STUDY_DOCS) --json > $$@.tmp
	$$(call to_midi,$$(dir $$@)study.txt,$$(dir $$@)study)
	mv $$@.tmp $$@


run-$(1): $(foreach s,$(SEEDS),$(call run_dir,$(1),$(s))/eval.json $(call run_dir,$(1),$(s))/samples.txt)
audio-$(1): $(foreach s,$(SEEDS),$(call run_dir,$(1),$(s))/audio.done)
.PHONY: run-$(1) audio-$(1)
endef
comma := ,
$(foreach c,$(sort $(ABLATION) $(experiment)),$(foreach s,$(SEEDS),$(eval $(call RUN_RULES,$(c),$(s)))))

experiment: run-$(experiment)
ablation: $(foreach c,$(ABLATION),run-$(c))

# continue: the reference's test.py. The run of experiment=NAME (the first seed of SEEDS, at the STEPS budget;
# trained first if it is not) continues every MIDI file of PROMPTS (folders, searched as midi2remi does, and/or
# MIDI or token-document files): RUN/continue/<name>.txt holds one document per file, named after it (its first
# PROMPT_TOKENS tokens, all by default, then CONTINUE_TOKENS new ones, sample's 512 by default; sampling seed SEED),
# and RUN/continue/<name>/ the same as MIDI files. <name>: CONTINUE_NAME, by default PROMPTS' first folder or file
# name. Reruns every time (the prompts are not tracked as prerequisites).
SEED ?= 1
PROMPT_TOKENS ?=
CONTINUE_TOKENS ?=
CONTINUE_NAME ?= $(or $(basename $(notdir $(abspath $(firstword $(PROMPTS))))),prompts)
ifneq ($(filter continue,$(MAKECMDGOALS)),) # checked before anything trains
ifndef experiment
$(error make continue: no experiment: give experiment=NAME, whose run's model continues PROMPTS)
endif
ifeq ($(strip $(PROMPTS)),)
$(error make continue: no PROMPTS: give PROMPTS=DIR (folders and/or MIDI files))
endif
$(foreach p,$(PROMPTS),$(if $(wildcard $(p)),,$(error make continue: PROMPTS: no such file or folder: '$(p)')))
CONTINUE_DIR = $(call run_dir,$(experiment),$(firstword $(SEEDS)))/continue
continue: $(call run_dir,$(experiment),$(firstword $(SEEDS)))/train.done | $(BIN)/sample $(BIN)/remi2midi
	@mkdir -p $(CONTINUE_DIR)
	$(BIN)/sample -q $(DEVICE_FLAG) -m $(dir $<) $(foreach p,$(PROMPTS),--prompt $(p))$(if $(PROMPT_TOKENS), --prompt-tokens \
	  $(PROMPT_TOKENS))$(if $(CONTINUE_TOKENS), -n $(CONTINUE_TOKENS)) --seed $(SEED) -j $(THREADS) \
	  -o $(CONTINUE_DIR)/$(CONTINUE_NAME).txt --registry $(REGISTRY)
	$(call to_midi,$(CONTINUE_DIR)/$(CONTINUE_NAME).txt,$(CONTINUE_DIR)/$(CONTINUE_NAME))
endif

# Audio of a run folder: every MIDI file (samples in midi/, eval's study documents in study/) -> an .ogg beside it.
# A pattern rule, so it serves any run folder, also of seeds or budgets not in SEEDS/STEPS today.
$(RUNS_DIR)/%/audio.done: $(RUNS_DIR)/%/samples.txt $(RUNS_DIR)/%/eval.json | $(BIN)/render $(AUDIO_STAMP)
	for f in $(@D)/midi/*.mid $(@D)/study/*.mid; do \
	  [ -e "$$f" ] || continue; $(BIN)/render -q -o "$${f%.mid}.ogg" "$$f"; done
	touch $@
# `make audio experiment=NAME`: that experiment's runs (made first when missing); `make audio`: every finished run
# folder (both samples.txt and eval.json present), training nothing. `make hear` adds the report.
finished_runs = $(filter $(patsubst %/eval.json,%,$(wildcard $(RUNS_DIR)/*/*/eval.json)),\
  $(patsubst %/samples.txt,%,$(wildcard $(RUNS_DIR)/*/*/samples.txt)))
audio: $(if $(experiment),audio-$(experiment),$(addsuffix /audio.done,$(finished_runs)))
hear: audio
	$(MAKE) --no-print-directory report

# results: one row per run, then mean ± sd per experiment (the ablation view)
results:
	@command -v sqlite3 >/dev/null || { echo "make results: the sqlite3 CLI is missing (make installs it)" >&2; exit 1; }
	@[ -f $(REGISTRY) ] || { echo "make results: no registry at $(REGISTRY) yet: run an experiment first" >&2; exit 1; }
	sqlite3 -header -column $(REGISTRY) "SELECT run_id, experiment, status, seed, model_type, updown_sample_type \
	  AS updown, attn_resampling AS attn, shorten_factor AS s, depth, loss_type AS loss, n_params, steps, \
	  round(best_val_loss, 4) AS best_val, round(test_perplexity, 3) AS test_ppl, round(test_accuracy, 4) AS \
	  test_acc, round(train_tokens_per_s) AS tok_s, round(wall_s) AS wall_s FROM results ORDER BY run_id"
	@echo
	sqlite3 -header -column $(REGISTRY) "SELECT experiment, n_runs, n_seeds, printf('%.4f ± %s', val_loss_mean, \
	  iif(val_loss_sd IS NULL, '-', printf('%.4f', val_loss_sd))) AS best_val_loss, printf('%.3f ± %s', test_perplexity_mean, \
	  iif(test_perplexity_sd IS NULL, '-', printf('%.3f', test_perplexity_sd))) AS test_ppl, printf('%.3f ± %s', pitch_class_kl_mean, \
	  iif(pitch_class_kl_sd IS NULL, '-', printf('%.3f', pitch_class_kl_sd))) AS pitch_class_kl, round(train_tokens_per_s_mean) AS tok_s, \
	  round(wall_s_mean) AS wall_s FROM ablation ORDER BY val_loss_mean"

.PHONY: experiment ablation results continue audio hear
