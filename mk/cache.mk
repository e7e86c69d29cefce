# mk/cache.mk - standalone build of the memory tier, its tests and tools.
#
#   make -f mk/cache.mk            # library objects, tools, tests
#   make -f mk/cache.mk check      # build and run the tests
#   make -f mk/cache.mk SAN=1 check          # with ASan + UBSan
#   make -f mk/cache.mk valgrind   # run the tests under valgrind
#
# Sources for the autotools build: CACHE_SOURCES (library), tools/sim.c +
# tools/sim_core.c (sqlcached-sim, -lz; test_cache uses sim_core.c too), tools/cachebench.c, tests/test_cache.c, tests/test_bloom.c.

CC      ?= cc
CFLAGS  ?= -O2
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Werror -pthread -g
LDLIBS  += -lm -pthread
B       ?= build
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
B       := build-san
endif

CACHE_SOURCES = src/cache.c src/cache_policy.c src/sketch.c src/bloom.c
CACHE_HEADERS = src/cache.h src/cache_int.h src/sketch.h src/bloom.h
CACHE_OBJECTS = $(CACHE_SOURCES:src/%.c=$(B)/%.o)

TESTS = $(B)/test_cache $(B)/test_bloom
TOOLS = $(B)/sqlcached-sim $(B)/cachebench

all: $(TOOLS) $(TESTS)

$(B)/%.o: src/%.c $(CACHE_HEADERS)
	@mkdir -p $(B)
	$(CC) $(CFLAGS) -Isrc -c -o $@ $<

$(B)/sqlcached-sim: tools/sim.c tools/sim_core.c tools/sim.h $(CACHE_OBJECTS)
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lz

$(B)/cachebench: tools/cachebench.c $(CACHE_OBJECTS)
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $^ $(LDLIBS)

$(B)/test_cache: tests/test_cache.c tools/sim_core.c tools/sim.h $(CACHE_OBJECTS)
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -Itools -o $@ $(filter %.c %.o,$^) $(LDLIBS) -lcmocka -lz

$(B)/test_bloom: tests/test_bloom.c $(CACHE_OBJECTS)
	$(CC) $(CFLAGS) $(LDFLAGS) -Isrc -o $@ $^ $(LDLIBS) -lcmocka

check: $(TESTS)
	@for t in $(TESTS); do echo "== $$t"; $$t || exit 1; done

valgrind: $(TESTS)
	@for t in $(TESTS); do echo "== valgrind $$t"; \
	  CACHE_TEST_QUICK=1 valgrind -q --leak-check=full --error-exitcode=1 $$t || exit 1; done

clean:
	rm -rf build build-san

.PHONY: all check valgrind clean
