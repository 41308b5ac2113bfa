# Hierarchical Music Transformer: a pipeline of small C tools. `make` builds bin/, `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

CC ?= cc
OPT ?= -O2
CFLAGS ?= $(OPT) -g -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -pthread
SHARED ?= ../shared
POP909 ?= $(SHARED)/data/pop909
GOLDEN ?= $(SHARED)/data/remi-golden

# ASan + UBSan build: `make test SAN=1` (separate build tree, so plain and sanitized objects never mix)
ifeq ($(SAN),1)
ifeq ($(CUDA),1)
$(error CUDA=1 and SAN=1 together are not supported: build them separately)
endif
BUILD := build/san
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(CUDA),1)
BUILD := build/cuda
else
BUILD := build/rel
endif
BIN := bin$(if $(filter 1,$(SAN)),-san)$(if $(filter 1,$(CUDA)),-cuda)

DEB_PKGS := libsmf-dev libcjson-dev libopenblas-dev libsqlite3-dev sqlite3 pkg-config
PKG_CFLAGS = $(shell pkg-config --cflags smf openblas 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs smf openblas 2>/dev/null) -lcjson -lsqlite3 -lm

LIB_SRC := $(wildcard libcommon/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOLS := midi2remi remi2midi shard train sample eval report
TOOL_BINS := $(TOOLS:%=$(BIN)/%)
TEST_SRC := $(filter-out tests/test_cuda_%,$(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# CUDA backend: `make CUDA=1` (build/cuda, bin-cuda). nvcc is $(CUDA_HOME)/bin/nvcc when CUDA_HOME is set, else the
# one on PATH; code for sm_$(CUDA_ARCH) plus its PTX. --fmad=false: no fused multiply-add, so the elementwise kernels
# give the CPU's bytes. Without CUDA=1, libcommon/cuda/gpu_none.c stands in (gpu_init says there is no backend).
# Objects do not track flags: after changing CUDA_ARCH, rm -rf build/cuda.
ifeq ($(CUDA),1)
NVCC := $(if $(CUDA_HOME),$(CUDA_HOME)/bin/nvcc,$(shell command -v nvcc 2>/dev/null))
ifeq ($(NVCC),)
$(error CUDA=1: nvcc not found (put it on PATH or set CUDA_HOME))
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
CUDA_LIB ?= $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib) $(CUDA_HOME)/lib64)
CUDA_ARCH ?= 90
NVCCFLAGS ?= $(OPT) -g -lineinfo -std=c++17 --fmad=false -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror
CU_SRC := $(wildcard libcommon/cuda/*.cu)
LIB_OBJ += $(CU_SRC:%.cu=$(BUILD)/%.o) $(BUILD)/libcommon/cuda/gpu_backend.o
PKG_LIBS += -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++
CUDA_TEST_BINS := $(BUILD)/tests/test_cuda_ops $(BUILD)/tests/test_cuda_model
TEST_BINS += $(CUDA_TEST_BINS)
else
LIB_OBJ += $(BUILD)/libcommon/cuda/gpu_none.o
endif

all: $(TOOL_BINS) $(BIN)/render

# $(call apt_install,PACKAGES[,APT-GET OPTIONS]): recipe text that installs Debian packages (sudo when not root)
apt_install = echo "installing Debian packages: $(1)" >&2; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(2) $(1) >&2

# Installs the Debian packages the build needs, once. Stamp kept outside the source tree.
DEPS_STAMP := build/.deps-ok
$(DEPS_STAMP):
	@mkdir -p build
	@if ! pkg-config --exists smf openblas libcjson sqlite3 2>/dev/null || ! command -v sqlite3 >/dev/null; then \
	  $(call apt_install,$(DEB_PKGS)); \
	fi
	@touch $@

$(BUILD)/%.o: %.c $(wildcard libcommon/*.h tests/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Ilibcommon -I$(BUILD) -c $< -o $@

$(BUILD)/%.o: %.cu $(wildcard libcommon/*.h libcommon/cuda/*.cuh) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)] -Ilibcommon \
	  -c $< -o $@

# The source revision the tools record in the registry (runs.git_rev); rewritten only when it changes.
GIT_REV := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/version.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define HMT_GIT_REV "$(GIT_REV)"' | cmp -s - $@ || echo '#define HMT_GIT_REV "$(GIT_REV)"' > $@
$(TOOLS:%=$(BUILD)/tools/%.o): $(BUILD)/version.h
FORCE:

$(BUILD)/libcommon.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(BUILD)/libcommon.a
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS) -pthread $< $(BUILD)/libcommon.a $(PKG_LIBS) -o $@

# render is a shell script (FluidSynth does the work): copied, executable, beside the tools it calls
$(BIN)/render: tools/render.sh
	@mkdir -p $(BIN)
	cp $< $@.tmp.$$$$ && chmod 755 $@.tmp.$$$$ && mv $@.tmp.$$$$ $@

# Audio (render, make audio): Debian's fluidsynth, sox and the 6 MB TimGM6mb General MIDI soundfont, installed once when
# missing (sudo when not root); render prefers FluidR3_GM (fluid-soundfont-gm) when that is installed, and
# SOUNDFONT=FILE overrides both. Stamp kept outside the source tree.
AUDIO_PKGS := fluidsynth sox timgm6mb-soundfont
AUDIO_STAMP := build/.audio-deps-ok
$(AUDIO_STAMP):
	@mkdir -p build
	@if ! command -v fluidsynth >/dev/null || ! command -v sox >/dev/null || { [ -z "$$SOUNDFONT" ] && [ ! -r /usr/share/sounds/sf2/TimGM6mb.sf2 ] && \
	    [ ! -r /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; }; then \
	  $(call apt_install,$(AUDIO_PKGS),--no-install-recommends); \
	fi
	@touch $@
audio-deps: $(AUDIO_STAMP)
.PHONY: audio-deps

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -pthread $< $(BUILD)/libcommon.a $(PKG_LIBS) -o $@

REGISTRY ?= results/registry.db
include pipelines/data.mk
include pipelines/experiment.mk

# ---- tests ------------------------------------------------------------------------------------
# Every test binary prints "N passed, N failed, N skipped" and exits non-zero on a failure; the shell tests likewise
# (a skip: a check whose hardware, Debian or PyPI package is absent here; never counted as passed).
# the benchmarks are built too (not run): a change that breaks one fails here, not on a lent GPU
test: $(TOOL_BINS) $(BIN)/render $(TEST_BINS) $(BUILD)/bench/model $(BUILD)/bench/decode $(BUILD)/bench/score
	@fail=0; \
	for t in $(TEST_BINS); do echo "== $$t"; \
	  SHARED=$(SHARED) $$t || fail=1; done; \
	for t in $(filter-out %_cuda.sh,$(wildcard tests/cli/*.sh)); do echo "== $$t"; \
	  BIN=$(BIN) SHARED=$(SHARED) bash $$t || fail=1; done; \
	if [ $$fail = 0 ]; then echo "make test: all passed"; else echo "make test: FAILED"; exit 1; fi

# `make test-cuda CUDA=1`: only the CUDA tests (the GPU ops against the CPU ops, the whole model on both backends,
# train --device cuda through the tools); without a GPU they count as skipped.
test-cuda: $(CUDA_TEST_BINS) $(TOOL_BINS)
	@$(if $(CUDA_TEST_BINS),,echo "test-cuda: needs CUDA=1" >&2; exit 2;) fail=0; \
	for t in $(CUDA_TEST_BINS); do echo "== $$t"; $$t || fail=1; done; \
	for t in $(wildcard tests/cli/*_cuda.sh); do echo "== $$t"; BIN=$(BIN) SHARED=$(SHARED) bash $$t || fail=1; done; \
	exit $$fail

# `make gpu-libs CUDA=1`: copies the shared libraries that the CUDA test and tools link, other than glibc, libstdc++,
# libgcc and CUDA's own (cuBLAS is too large to carry), into build/gpu-libs: the folder bench/gpu_check.sh puts on
# LD_LIBRARY_PATH on a bare GPU machine (libsmf, libcjson, libglib-2.0, OpenBLAS and theirs); and shards of 40 POP909
# songs into build/gpu-data for tests/cli/test_tools_cuda.sh there (carry build/gpu-data). The binaries are stripped.
GPU_LIBS_SYSTEM := '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libcublas|libcublasLt|libcudart|ld-linux-x86-64)\.so'
gpu-libs: $(CUDA_TEST_BINS) $(TOOL_BINS) $(if $(filter 1,$(CUDA)),$(BUILD)/bench/model $(BUILD)/bench/decode)
	@$(if $(CUDA_TEST_BINS),,echo "gpu-libs: needs CUDA=1" >&2; exit 2;) rm -rf build/gpu-libs && mkdir -p build/gpu-libs
	ldd $^ | awk '$$2 == "=>" && $$3 ~ /^\// {print $$3}' | sort -u | grep -vE $(GPU_LIBS_SYSTEM) | \
	  while read -r p; do cp -L "$$p" build/gpu-libs/; done
	@ls build/gpu-libs && du -sh build/gpu-libs
	strip $^ # the carry is limited (64 MiB on the lent machines): no debug info
	rm -rf build/gpu-data && mkdir -p build/gpu-data
	ls $(SHARED)/data/pop909/*.mid | sed -n 1,40p | $(BIN)/midi2remi -q | $(BIN)/shard -q -o build/gpu-data/shards --val 0.2 --test 0.1
	@du -shc build/cuda/tests build/cuda/bench build/gpu-libs build/gpu-data $(BIN) | tail -1

# `make CUDA=1 gpu-ablation`: what bench/gpu_ablation.sh needs on a lent GPU, in build/gpu-ablation: stripped
# train, eval and sample, and the shards of all of POP909 with `make data`'s split (13 MB). Carry it with
# build/gpu-libs (`make CUDA=1 gpu-libs`). Keeps registry.db and runs/ there: carried back, the grid goes on.
gpu-ablation: $(addprefix $(BIN)/,train eval sample midi2remi shard)
	@$(if $(filter 1,$(CUDA)),,echo "gpu-ablation: needs CUDA=1" >&2; exit 2;) mkdir -p build/gpu-ablation/bin
	cp $(addprefix $(BIN)/,train eval sample) build/gpu-ablation/bin/ && strip build/gpu-ablation/bin/*
	$(MAKE) --no-print-directory data DATA_DIR=build/gpu-ablation MIDI_DIR=$(POP909)
	@du -shc build/gpu-ablation build/gpu-libs 2>/dev/null | tail -1

# `make CUDA=1 gpu-pack SHARED=../shared`: everything a lent GPU machine needs for bench/gpu_session.sh in one
# file, build/gpu-pack/pack.tar.xz (37 MB against 217 MiB unpacked on 2026-11-28: the carry is 64 MiB): gpu-libs' and
# gpu-ablation's folders, the CUDA tests and benchmarks, bin-cuda. Carry build/gpu-pack; the script unpacks it.
GPU_PACK := build/cuda/tests build/cuda/bench build/gpu-libs build/gpu-data build/gpu-ablation/bin \
            build/gpu-ablation/shards $(BIN)
gpu-pack: gpu-libs gpu-ablation
	rm -rf build/gpu-pack && mkdir -p build/gpu-pack
	tar -cf - $(GPU_PACK) | xz -T2 -6 > build/gpu-pack/pack.tar.xz.tmp && mv build/gpu-pack/pack.tar.xz.tmp build/gpu-pack/pack.tar.xz
	@du -sh build/gpu-pack/pack.tar.xz

# `make test-cuda-emu`: tests/test_cuda_ops.c against the same CUDA sources compiled for the CPU (-DGPU_EMU), their
# kernels run by the emulator of tests/emu (threads as user-space contexts, barriers and shuffles checked, ASan and
# UBSan on device memory). No nvcc or GPU needed: it checks the kernels' logic on any machine, not the GPU itself.
# It also runs bench/model --plan once (built for the emulator), so the README's memory counts' command keeps working.
EMU_CXX ?= g++
EMU_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
EMU_LD := -Wl,-T,tests/emu/smem.ld # the kernels' static shared memory on pages of its own
# $(eval $(call emu_tree,DIR,KERNEL FLAGS,EMULATOR FLAGS,HOST FLAGS,LINK FLAGS)): the rules of one emulator build in
# DIR (build/emu, build/emu-race, build/emu-cov, build/emu-fast): libcommon/cuda's CUDA sources compiled for the CPU
# (-DGPU_EMU) with KERNEL FLAGS, tests/emu/cuda_emu.cpp with EMULATOR FLAGS, gpu_backend.c and the programs' own C
# sources with CFLAGS and HOST FLAGS, linked with LINK FLAGS against $(BUILD)/libcommon.a: DIR/test_cuda_ops and
# DIR/test_cuda_model, DIR/bench/model (bench/*.c) and DIR/bin/TOOL (the tools of tools/*.c)
define emu_tree
$(1)_OBJ := $$(patsubst libcommon/cuda/%.cu,$(1)/%.o,$$(wildcard libcommon/cuda/*.cu)) $(1)/cuda_emu.o $(1)/gpu_backend.o
.SECONDARY: $$($(1)_OBJ) # kept: make would remove them as intermediates of the programs' pattern rules
$(1)/%.o: libcommon/cuda/%.cu $$(wildcard libcommon/*.h libcommon/cuda/*.cuh tests/emu/*.h) | $$(DEPS_STAMP)
	@mkdir -p $$(@D)
	$$(EMU_CXX) -std=c++17 $(2) -Wall -Wextra -Werror -DGPU_EMU -Itests/emu -Ilibcommon -x c++ -c $$< -o $$@
$(1)/cuda_emu.o: tests/emu/cuda_emu.cpp tests/emu/cuda_emu.h | $$(DEPS_STAMP)
	@mkdir -p $$(@D)
	$$(EMU_CXX) -std=c++17 $(3) -Wall -Wextra -Werror $$(PKG_CFLAGS) -c $$< -o $$@
$(1)/gpu_backend.o: libcommon/cuda/gpu_backend.c $$(wildcard libcommon/*.h) | $$(DEPS_STAMP)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $(4) -Ilibcommon -c $$< -o $$@
$(1)/test_cuda_%: tests/test_cuda_%.c $$(wildcard libcommon/*.h tests/*.h) $$($(1)_OBJ) $$(BUILD)/libcommon.a
	$$(CC) $$(CFLAGS) $(4) $$(PKG_CFLAGS) -Ilibcommon -c $$< -o $$@.o
	$$(EMU_CXX) $(5) $$(EMU_LD) $$@.o $$($(1)_OBJ) $$(BUILD)/libcommon.a $$(PKG_LIBS) -o $$@
$(1)/bench/%: bench/%.c $$(wildcard libcommon/*.h) $$($(1)_OBJ) $$(BUILD)/libcommon.a
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $(4) $$(PKG_CFLAGS) -Ilibcommon -c $$< -o $$@.o
	$$(EMU_CXX) $(5) $$(EMU_LD) $$@.o $$($(1)_OBJ) $$(BUILD)/libcommon.a $$(PKG_LIBS) -o $$@
$(1)/bin/%: $$(BUILD)/tools/%.o $$($(1)_OBJ) $$(BUILD)/libcommon.a
	@mkdir -p $$(@D)
	$$(EMU_CXX) $(5) $$(EMU_LD) $$< $$($(1)_OBJ) $$(BUILD)/libcommon.a $$(PKG_LIBS) -o $$@
endef
$(eval $(call emu_tree,build/emu,$(EMU_FLAGS),$(EMU_FLAGS),$(EMU_FLAGS),$(EMU_FLAGS)))
test-cuda-emu: build/emu/test_cuda_ops build/emu/test_cuda_model build/emu/bench/model
	@rm -f build/emu/launches.txt; for t in build/emu/test_cuda_ops build/emu/test_cuda_model; do echo "== $$t"; \
	  EMU_LAUNCH_LOG=build/emu/launches.txt ASAN_OPTIONS=detect_leaks=0 $$t || exit 1; done
	@echo "== tests/emu/check_smem.sh (every static __shared__ array is fresh for each block)"; \
	  tests/emu/check_smem.sh build/emu/test_cuda_ops
	@echo "== build/emu/bench/model --plan (the README's memory counts' command, at batch 2)"; \
	  ASAN_OPTIONS=detect_leaks=0 build/emu/bench/model --plan --device cuda --batch 2 --full --precision bf16

# `make test-cuda-launch CUDA=1`, after `make test-cuda-emu` (whose launches it reads, build/emu/launches.txt): each
# kernel's shapes (threads, dynamic shared memory) against ptxas's count of its registers and static shared memory
# for sm_$(CUDA_ARCH) and its __launch_bounds__ (.maxntid): a block a GPU has not the resources for fails there at
# launch and runs on the emulator (tests/emu/check_launch.sh; tests/emu/test_check_launch.sh, its own test, first)
LAUNCH_RES := $(patsubst libcommon/cuda/%.cu,build/cuda-res/%.res,$(wildcard libcommon/cuda/*.cu))
build/cuda-res/%.res: libcommon/cuda/%.cu $(wildcard libcommon/*.h libcommon/cuda/*.cuh)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -arch=compute_$(CUDA_ARCH) -Ilibcommon -ptx $< -o $(@:.res=.ptx)
	$(CUDA_HOME)/bin/ptxas -arch=sm_$(CUDA_ARCH) -v $(@:.res=.ptx) -o /dev/null >$@.tmp 2>&1 || { cat $@.tmp; exit 1; }
	@mv $@.tmp $@
test-cuda-launch: $(if $(NVCC),$(LAUNCH_RES))
	@$(if $(NVCC),,echo "test-cuda-launch: needs CUDA=1" >&2; exit 2;) \
	  echo "== tests/emu/test_check_launch.sh"; tests/emu/test_check_launch.sh build/cuda-res build/emu/launches.txt && \
	  echo "== tests/emu/check_launch.sh" && \
	  CUDA_ARCH=$(CUDA_ARCH) tests/emu/check_launch.sh build/cuda-res build/emu/launches.txt

# `make test-cuda-race`: the same tests on the same emulator under ThreadSanitizer instead of ASan (-DEMU_RACE: each
# emulated thread a fiber, ordered only as a GPU orders them; see tests/emu/cuda_emu.cpp), so a missing
# __syncthreads or __syncwarp, or two blocks of a launch writing one word, is reported wherever the emulator's thread
# order happens to hide it. The kernels are instrumented, the emulator and host code are not. tests/emu/race.sh runs
# it: every section of test_cuda_ops but attention (RACE_SECTIONS: those sections instead)
RACE_FLAGS := -O1 -g -fno-omit-frame-pointer -DEMU_RACE
$(eval $(call emu_tree,build/emu-race,$(RACE_FLAGS) -fsanitize=thread,$(RACE_FLAGS),,-fsanitize=thread))
# test_cuda_ops, test_cuda_model (`make build/emu-race/test_cuda_model`, then its sections by name)
build/emu-race/test_race: tests/emu/test_race.cpp tests/emu/cuda_emu.h libcommon/cuda/gpu_mma.cuh \
  build/emu-race/cuda_emu.o
	$(EMU_CXX) -std=c++17 $(RACE_FLAGS) -fsanitize=thread -Wall -Wextra -Werror -DGPU_EMU -Itests/emu -Ilibcommon \
	  $(EMU_LD) $< build/emu-race/cuda_emu.o $(PKG_LIBS) -o $@
test-cuda-race: build/emu-race/test_cuda_ops build/emu-race/test_race
	@tests/emu/race.sh $(RACE_SECTIONS)

# `make cover-cuda-emu`: which lines of the CUDA sources `make test-cuda-emu`'s two tests never run (gcc --coverage,
# no sanitizers, build/emu-cov; tests/emu/cover.sh). Code no test runs has not run anywhere until a GPU window, so
# this is where a test is wanted first. A report, not a test: not in .ci/run
COV_FLAGS := -O1 -g --coverage -fno-omit-frame-pointer
$(eval $(call emu_tree,build/emu-cov,$(COV_FLAGS),-O1 -g,--coverage,--coverage))
cover-cuda-emu: build/emu-cov/test_cuda_ops build/emu-cov/test_cuda_model
	@tests/emu/cover.sh build/emu-cov

# `make test-tools-emu`: tests/cli/test_tools_cuda.sh, train, sample and eval --device cuda through the tools, with
# the tools built for the emulator without sanitizers (build/emu-fast/bin; the kernels' ASan checks are
# test-cuda-emu's), on shards of 10 POP909 songs (2 test documents: eval's generation study needs them). The tools'
# own GPU paths (the step's graph, the one block, resume across devices, the precisions) run nowhere else before a
# GPU window. About 13 minutes on one core (in .ci/run)
$(eval $(call emu_tree,build/emu-fast,-O2 -g,-O2 -g,,))
test-tools-emu: $(addprefix build/emu-fast/bin/,train sample eval) $(BIN)/midi2remi $(BIN)/shard
	rm -rf build/emu-fast/shards
	ls $(POP909)/*.mid | sed -n 1,10p | $(BIN)/midi2remi -q | $(BIN)/shard -q -o build/emu-fast/shards --val 0.1 --test 0.2
	BIN=build/emu-fast/bin SHARDS=build/emu-fast/shards HMT_REQUIRE_GPU=1 HMT_GPU_NAME=cuda_emu \
	  bash tests/cli/test_tools_cuda.sh

clean:
	rm -rf build bin bin-san bin-cuda

# `make report`: results/report.html from the registry (tables, loss curves, ablation bars, piano rolls, and the
# runs' audio where `make audio` rendered it, copied beside the page into results/audio/)
REPORT_HTML ?= results/report.html
report: $(BIN)/report
	@mkdir -p $(dir $(REPORT_HTML))
	$(BIN)/report --registry $(REGISTRY) -o $(REPORT_HTML)

.PHONY: all test test-cuda test-cuda-emu test-cuda-launch test-cuda-race cover-cuda-emu test-tools-emu gpu-libs gpu-ablation gpu-pack clean report

# ---- fuzzing ----------------------------------------------------------------------------------
# `make fuzz` builds the libFuzzer harness (clang, ASan + UBSan) into build/fuzz and runs it for FUZZ_SECONDS, seeded
# with tests/data/bad and a few POP909 songs (copied to build/fuzz/seed, never committed). The corpus it grows stays
# in build/fuzz/corpus; a crash, timeout or OOM input lands in build/fuzz/artifacts: commit it as
# tests/data/bad/fuzz-*.mid with its expected outcome in tests/test_midi_bad.c.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_OPTS ?= -rss_limit_mb=2048 -timeout=10
FUZZ_SEEDS := 001 002 100 400 700 909
FUZZ_SRC := tests/fuzz/fuzz_midi.c libcommon/midi.c libcommon/remi.c libcommon/util.c

build/fuzz/fuzz_midi: $(FUZZ_SRC) $(wildcard libcommon/*.h) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -O1 -g -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all $(PKG_CFLAGS) -Ilibcommon $(FUZZ_SRC) $(PKG_LIBS) -o $@

fuzz: build/fuzz/fuzz_midi
	rm -rf build/fuzz/seed && mkdir -p build/fuzz/seed build/fuzz/corpus build/fuzz/artifacts
	cp tests/data/bad/*.mid build/fuzz/seed/
	for s in $(FUZZ_SEEDS); do cp $(POP909)/$$s.mid build/fuzz/seed/pop909-$$s.mid; done
	build/fuzz/fuzz_midi -max_total_time=$(FUZZ_SECONDS) $(FUZZ_OPTS) -dict=tests/fuzz/midi.dict \
	  -artifact_prefix=build/fuzz/artifacts/ -print_final_stats=1 build/fuzz/corpus build/fuzz/seed

.PHONY: fuzz

# ---- PyTorch reference fixtures (committed; `make test` needs no Python) ---------------------------
# Debian's python3-torch is installed when missing; /usr/bin/python3 is Debian's interpreter, whatever PATH says.
PYTHON_DEB ?= /usr/bin/python3
python-torch:
	@$(PYTHON_DEB) -c 'import torch' 2>/dev/null || { $(call apt_install,python3-torch); }

fixtures: python-torch
	$(PYTHON_DEB) tests/ref/model.py
	$(PYTHON_DEB) tests/ref/export.py tests/fixtures
	$(PYTHON_DEB) tests/ref/param_table.py configs/seed_default.json tests/fixtures/seed_default.params

.PHONY: fixtures python-torch

# C -> PyTorch interop: a C checkpoint loads into the reference with load_state_dict(strict=True), same logits.
# (PyTorch -> C runs in `make test`, from a committed safetensors fixture.) Needs python3-torch, as fixtures.
interop: python-torch $(BUILD)/tests/test_ckpt
	@mkdir -p build/interop build/interop-nest6
	$(BUILD)/tests/test_ckpt --export build/interop
	$(PYTHON_DEB) tests/ref/interop.py build/interop
	$(BUILD)/tests/test_ckpt --export-nest6 build/interop-nest6
	$(PYTHON_DEB) tests/ref/interop.py build/interop-nest6

.PHONY: interop

# Benchmarks (not tests): bench/model measures the C model's training step; see README for the side-by-side run.
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) -pthread $< $(BUILD)/libcommon.a $(PKG_LIBS) -o $@
bench-model: $(BUILD)/bench/model
	OPENBLAS_NUM_THREADS=2 $(BUILD)/bench/model $(RUNS)

.PHONY: bench-model
