# certsync — one GNU Makefile, pkg-config for every dependency, objects under build/.
#
#   make run     install what is missing, build, reconcile examples/ with the built-in CA
#   make test    install what tests need, -Werror build, unit tests (ASan+UBSan), fuzz smoke run, e2e suite
#   make fuzz    each libFuzzer harness for FUZZ_SECONDS (fuzz/README.md)
#   make test-long  the e2e suite with every kill point of the crash matrix
#   make tsan    ThreadSanitizer build, the e2e tests with parallel workers under it
#   make bench   performance figures (never part of make test)
#   make lint    clang-format check and banned calls
#   make install PREFIX=/usr/local DESTDIR=   binary, certsync(1), systemd units, docs, example config
#   make uninstall                            the same files removed

BUILD   ?= build
SAN     ?=
WERROR  ?=
OPT     ?= -O2

PKGS     := yaml-0.1 libcurl openssl jansson libgit2 libmicrohttpd libpq ldns
TESTPKGS := cmocka
# Debian packages: what `make deps` installs when something is missing.
DEB_BUILD := build-essential pkg-config git openssl libyaml-dev libcurl4-openssl-dev libssl-dev \
             libjansson-dev libgit2-dev libmicrohttpd-dev libpq-dev libldns-dev
DEB_TEST  := libcmocka-dev postgresql python3 python3-pytest python3-pytest-xdist curl prometheus wrk clang libclang-rt-14-dev strace \
             pebble bind9 bind9-utils bind9-dnsutils systemd man-db groff-base python3-yaml nginx openssh-server openssh-client gpg gpgconf
# The ACME clients `make bench` compares certsync with.
DEB_BENCH := lego certbot uacme
PYTHON    := /usr/bin/python3

SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(if $(WERROR),-Werror) $(CFLAGS) \
             $(if $(SAN),$(SANFLAGS)) \
             -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -pthread -MMD -MP
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread
LDFLAGS_ALL = $(if $(SAN),$(SANFLAGS)) $(LDFLAGS)

LIB_SRC := $(sort $(shell find util manifests state reconciler -name '*.c' ! -path 'reconciler/cmd/*'))
CMD_SRC := $(sort $(wildcard reconciler/cmd/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_HELPERS := $(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c))

.PHONY: install uninstall man all deps test-deps run test unit unit-build fakes e2e bench lint clean asan valgrind fuzz fuzz-build fuzz-regress fuzz-smoke test-long tsan
.DEFAULT_GOAL := all

all: $(BUILD)/certsync $(BUILD)/certsync.1

# certsync(1) from docs/cli.md by a small awk script (no Python, no pandoc at build time). LC_ALL=C: the
# script reads bytes and writes UTF-8 as groff escapes. The date is the reference's own (reproducible).
VERSION := $(shell sed -n 's/^\#define CERTSYNC_VERSION "\(.*\)"/\1/p' reconciler/cmd/cmd_version.c)
man: $(BUILD)/certsync.1
$(BUILD)/certsync.1: docs/cli.md tools/md2man.awk reconciler/cmd/cmd_version.c
	@mkdir -p $(dir $@)
	LC_ALL=C awk -v version=$(VERSION) -v date=$$(date -u -d @$${SOURCE_DATE_EPOCH:-$$(stat -c %Y docs/cli.md)} +%Y-%m-%d) \
		-f tools/md2man.awk docs/cli.md > $@.tmp.$$$$ && mv $@.tmp.$$$$ $@

# The commit the binary is built from (certsync version): rewritten only when it changes.
GIT_COMMIT := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/gen/commit.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define CERTSYNC_COMMIT "$(GIT_COMMIT)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/obj/reconciler/cmd/cmd_version.o: $(BUILD)/gen/commit.h
$(BUILD)/obj/reconciler/cmd/cmd_version.o: ALL_CFLAGS += -I$(BUILD)/gen
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libcertsync.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/certsync: $(CMD_OBJ) $(BUILD)/libcertsync.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(CMD_OBJ) $(BUILD)/libcertsync.a $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(UNIT_HELPERS) $(BUILD)/libcertsync.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(UNIT_HELPERS) $(BUILD)/libcertsync.a $(LDLIBS_ALL) \
		$(shell pkg-config --libs $(TESTPKGS) 2>/dev/null)

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)

# ---- dependencies: install only what is missing (apt-get; sudo when not root) ----
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
define need_debs
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi
endef

deps:
	$(call need_debs,$(DEB_BUILD))

test-deps: deps
	$(call need_debs,$(DEB_TEST))

# ---- the main job on the built-in CA issuer ----
RUN_DIR ?= $(CURDIR)/.run
run: deps
	@$(MAKE) --no-print-directory all
	@sh examples/run.sh $(BUILD)/certsync $(RUN_DIR)

# ---- tests ----
# The unit tests of the postgres backend and key store talk to a real server: tests/pg/pgtest.sh starts
# one in a temporary directory (CERTSYNC_TEST_PG_URL) and it is stopped however the tests end.
FREE_PORT = $(shell $(PYTHON) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# $(call with_pg,NAME): a shell prefix that starts a throwaway server ($$url, $$pgdir), stopped and removed on exit.
with_pg = pgdir=$$(mktemp -d /tmp/certsync-$(1)-pg.XXXXXX); \
	trap 'sh tests/pg/pgtest.sh stop '$$pgdir' >/dev/null 2>&1; rm -rf '$$pgdir EXIT; trap 'exit 130' INT TERM HUP; \
	url=$$(sh tests/pg/pgtest.sh start $$pgdir $(FREE_PORT))
WITH_PG = $(call with_pg,unit); export CERTSYNC_TEST_PG_URL=$$url CERTSYNC_TEST_PG_DIR=$$pgdir
unit: $(UNIT_BIN)
	@set -e; $(WITH_PG); \
	for t in $(UNIT_BIN); do echo "== $$t"; LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $$t; done

# The simulators' own self-tests (both are named test_sim.py: importlib mode keeps them apart).
fakes:
	$(PYTHON) -m pytest -q -p no:cacheprovider --import-mode=importlib tests/fakes

# The e2e tests mostly wait on processes (simulators, kills, polls): E2E_JOBS pytest-xdist workers
# run them side by side (E2E_JOBS=0 runs them one by one). PYTEST_ARGS narrows the run (files, -k);
# without it pytest collects tests/e2e.
E2E_JOBS ?= 4
e2e: $(BUILD)/certsync
	cd tests/e2e && LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp CERTSYNC_BIN=$(abspath $(BUILD)/certsync) \
		$(PYTHON) -m pytest -q -p no:cacheprovider $(if $(filter-out 0,$(E2E_JOBS)),-n $(E2E_JOBS)) $(PYTEST_ARGS)

# make test-long: the e2e suite with every kill point of the crash matrix (a sample runs in make test).
test-long: $(BUILD)/certsync
	@CERTSYNC_TEST_LONG=1 $(MAKE) --no-print-directory e2e

# make tsan: a ThreadSanitizer build (gcc) in build/tsan, then the e2e tests that run parallel workers.
TSAN_TESTS ?= test_crash_matrix.py \
	test_dnsimple.py::test_a_waiting_certificate_frees_its_worker \
	test_digicert.py::test_certificates_in_parallel_share_the_zone_and_the_webroot \
	test_run.py::test_sigterm_during_an_apply_leaves_consistent_state_and_a_restart_converges
tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan WERROR=1 CFLAGS="-O1 -g -fsanitize=thread" \
		LDFLAGS=-fsanitize=thread build/tsan/certsync
	cd tests/e2e && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 $(TSAN_EXTRA)" \
		CERTSYNC_BIN=$(abspath build/tsan/certsync) $(PYTHON) -m pytest -q -p no:cacheprovider $(TSAN_TESTS)

# make test: -Werror everywhere; unit tests and e2e under ASan+UBSan, then e2e on the plain build.
# The builds run NPROC jobs side by side; the tests themselves run in their own order.
NPROC ?= $(shell nproc 2>/dev/null || echo 2)
unit-build: $(UNIT_BIN) $(BUILD)/certsync
test: test-deps
	@$(MAKE) --no-print-directory fakes
	@$(MAKE) --no-print-directory -j$(NPROC) BUILD=build/asan SAN=1 WERROR=1 OPT=-O1 unit-build
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 WERROR=1 OPT=-O1 unit
	@$(MAKE) --no-print-directory -j$(NPROC) BUILD=$(FUZZ_BUILD) CC=clang SAN=1 SANFLAGS="$(FUZZ_SAN)" WERROR=1 \
		OPT=-O1 $(FUZZ_BIN)
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 WERROR=1 OPT=-O1 e2e \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
	@$(MAKE) --no-print-directory -j$(NPROC) WERROR=1 all

# ---- fuzzing (fuzz/README.md): libFuzzer harnesses built with clang, ASan+UBSan, under build/fuzz ----
# fuzz/ is not in LIB_SRC: the harnesses link the library, they are not part of it.
FUZZ_BUILD := build/fuzz
FUZZ_SAN   := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_NAMES := $(sort $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c)))
FUZZ_BIN   := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 6
FUZZ_ENV   := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
              LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
FUZZ_FLAGS := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SAN=1 SANFLAGS="$(FUZZ_SAN)" WERROR=1 OPT=-O1 $(FUZZ_BIN)

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_BUILD)/libcertsync.a
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libcertsync.a $(LDLIBS_ALL)

# Every seed and every regression input (fuzz/regressions/<harness>/: the crashes and stalls once found) runs once.
fuzz-regress: fuzz-build
	@set -e; for h in $(FUZZ_NAMES); do \
		files=$$(find fuzz/corpus/$$h fuzz/regressions/$$h -type f 2>/dev/null | sort); \
		[ -z "$$files" ] && continue; \
		echo "== fuzz $$h: $$(echo "$$files" | wc -l) saved inputs"; \
		$(FUZZ_ENV) $(FUZZ_BUILD)/fuzz_$$h -timeout=5 $$files 2>$(FUZZ_BUILD)/$$h.replay.log \
			|| { cat $(FUZZ_BUILD)/$$h.replay.log; exit 1; }; \
	done

# Each harness for $(1) seconds from its committed seeds and what build/fuzz/$(2)/<harness> holds (new inputs
# go there); crashes to build/fuzz/.
define fuzz_each
	@set -e; for h in $(FUZZ_NAMES); do \
		mkdir -p $(FUZZ_BUILD)/$(2)/$$h; \
		echo "== fuzz $$h for $(1) s"; \
		$(FUZZ_ENV) $(FUZZ_BUILD)/fuzz_$$h $(FUZZ_FLAGS) -max_total_time=$(1) -artifact_prefix=$(FUZZ_BUILD)/$$h- \
			$(FUZZ_BUILD)/$(2)/$$h fuzz/corpus/$$h 2>$(FUZZ_BUILD)/$$h.log \
			|| { tail -n 60 $(FUZZ_BUILD)/$$h.log; exit 1; }; \
		grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' $(FUZZ_BUILD)/$$h.log | tr '\n' ' '; echo; \
	done
endef

# The smoke run starts from the committed seeds alone each time, so its cost does not grow with local runs.
fuzz-smoke: fuzz-regress
	@rm -rf $(FUZZ_BUILD)/smoke
	$(call fuzz_each,$(FUZZ_SMOKE_SECONDS),smoke)

fuzz: fuzz-regress
	$(call fuzz_each,$(FUZZ_SECONDS),corpus)

# The benchmark's PostgreSQL is a throwaway server of its own (tests/pg/pgtest.sh, a temporary directory, a free
# loopback port), stopped and removed however the bench ends; bench.py gets its URL and a random key store key.
# Unlike the tests' servers it commits durably (fsync, synchronous_commit): a write's time includes its WAL flush.
$(BUILD)/pg_state_bench: bench/pg_state.c $(BUILD)/libcertsync.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/libcertsync.a $(LDLIBS_ALL)

# The output check's floor (the same stat calls alone), beside the cold plan's figure.
$(BUILD)/stat_floor: bench/stat_floor.c
	$(CC) $(ALL_CFLAGS) -o $@ $< -pthread

# BENCH=acme runs only the ACME comparison (bench/acme.py), which the whole bench runs last. The ACME
# clients are optional: when one cannot be installed, its row says so and the rest still runs.
BENCH ?= all
bench: test-deps
	-$(call need_debs,$(DEB_BENCH))
ifeq ($(BENCH),acme)
	@$(MAKE) --no-print-directory BUILD=build/bench OPT="-O2 -DNDEBUG" all
	$(PYTHON) bench/acme.py build/bench/certsync
else
	@$(MAKE) --no-print-directory BUILD=build/bench OPT="-O2 -DNDEBUG" all build/bench/pg_state_bench \
		build/bench/stat_floor
	@set -e; export PGTEST_DURABLE=1; $(call with_pg,bench); \
	CERTSYNC_BENCH_PG_URL=$$url CERTSYNC_BENCH_STATE_KEY=$$(openssl rand -base64 32) \
		$(PYTHON) bench/bench.py build/bench/certsync build/bench/pg_state_bench build/bench/stat_floor
endif

valgrind: $(BUILD)/certsync $(UNIT_BIN)
	@set -e; $(WITH_PG); \
	for t in $(UNIT_BIN); do valgrind -q --error-exitcode=9 --leak-check=full $$t >/dev/null; done; echo "valgrind: clean"

BANNED := '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|tmpnam)\s*\('
lint:
	@! grep -nE $(BANNED) $(LIB_SRC) $(CMD_SRC) || (echo "lint: banned call" && false)
	@clang-format --dry-run --Werror $(LIB_SRC) $(CMD_SRC) $(shell find util manifests state reconciler -name '*.h') && echo "lint: ok"

# ---- install (GNU conventions: PREFIX, DESTDIR for staging; the units name the installed binary) ----
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/certsync
UNITDIR ?= $(PREFIX)/lib/systemd/system
UNITS   := certsync.service certsync-reload-nginx.path certsync-reload-nginx.service
DOCS    := $(wildcard docs/*.md)
APIDOCS := $(wildcard docs/api/*.md)
INSTALL ?= install

install: $(BUILD)/certsync $(BUILD)/certsync.1
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/docs/api $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(BUILD)/certsync $(DESTDIR)$(BINDIR)/certsync
	$(INSTALL) -m 0644 $(BUILD)/certsync.1 $(DESTDIR)$(MANDIR)/man1/certsync.1
	$(INSTALL) -m 0644 README.md LICENSE $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/docs/
	$(INSTALL) -m 0644 $(APIDOCS) $(DESTDIR)$(DOCDIR)/docs/api/
	$(INSTALL) -m 0644 examples/systemd/certsync.yaml $(DESTDIR)$(DOCDIR)/examples/certsync.yaml.example
	$(INSTALL) -m 0644 examples/prometheus/certsync-rules.yaml $(DESTDIR)$(DOCDIR)/examples/certsync-rules.yaml
	@set -e; for u in $(UNITS); do \
		sed -e 's|/usr/local/bin/certsync|$(BINDIR)/certsync|g' -e 's|/usr/local/share/doc/certsync|$(DOCDIR)|g' \
			examples/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp; mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u; \
		echo "installed $(DESTDIR)$(UNITDIR)/$$u"; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/certsync $(DESTDIR)$(MANDIR)/man1/certsync.1 $(UNITS:%=$(DESTDIR)$(UNITDIR)/%)
	rm -f $(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(DOCDIR)/LICENSE $(DOCS:docs/%=$(DESTDIR)$(DOCDIR)/docs/%) \
		$(APIDOCS:docs/%=$(DESTDIR)$(DOCDIR)/docs/%)
	rm -f $(DESTDIR)$(DOCDIR)/examples/certsync.yaml.example $(DESTDIR)$(DOCDIR)/examples/certsync-rules.yaml
	-rmdir $(DESTDIR)$(DOCDIR)/docs/api $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null

clean:
	rm -rf build .run
