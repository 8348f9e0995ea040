# ngx_http_welby_module: build, test, demo.
#
#   make            build build/ngx_http_welby_module.so for /usr/sbin/nginx
#   make test       unit tests and end-to-end tests through nginx
#   make test-asan  the whole suite with the module built with ASan+UBSan
#   make test-nginx nginx's own test suite without and with the module
#   make run        the demo gateway on https://localhost:8443/
#
# NGINX_SRC points at another nginx source tree (1.22 or later) to build
# against; by default Debian's nginx-dev copy, whose conf_flags match the
# stock binary.

NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
BUILD       := $(CURDIR)/build
CC          ?= cc
PROVE       ?= prove
PROVE_JOBS  ?= 2

# The flags Debian builds its nginx modules with: the module must be
# hardened like the binary that loads it.
CC_OPT      := -g -O2 -fstack-protector-strong -Wformat \
               -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
LD_OPT      := -Wl,-z,relro -Wl,-z,now -fPIC
ASAN_OPT    := -g -O1 -fno-omit-frame-pointer -fPIC \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined

DEB_PACKAGES := nginx nginx-dev gcc make clang libclang-rt-14-dev \
                libc6-dev libssl-dev libpcre2-dev \
                zlib1g-dev libjansson-dev libmodsecurity-dev modsecurity-crs \
                libmaxminddb-dev \
                libnginx-mod-http-js openssl curl perl \
                libjson-xs-perl libio-socket-ssl-perl libcrypt-jwt-perl \
                libcryptx-perl libmaxmind-db-writer-perl \
                python3 testssl.sh sslscan prometheus wrk gdb

# What `make bench` needs on top of DEB_PACKAGES.
BENCH_PACKAGES := wrk libnginx-mod-http-modsecurity modsecurity-crs

# What `make test-nginx` needs on top of DEB_PACKAGES: the dynamic modules
# the stock binary was built with, without which nginx-tests' Test::Nginx
# cannot start it.
NGINX_TESTS_PACKAGES := libnginx-mod-http-geoip \
                libnginx-mod-http-image-filter libnginx-mod-http-xslt-filter \
                libnginx-mod-mail libnginx-mod-stream \
                libnginx-mod-stream-geoip libnginx-mod-http-perl

# A checkout of https://github.com/nginx/nginx-tests (relative to the
# repository, or absolute); CI has one next to the repository.
NGINX_TESTS ?= ../shared/nginx-tests

MODULE_SRCS := config $(wildcard ngx_welby_module/*.c ngx_welby_module/*.cc \
                 ngx_welby_module/*.h)
PURE_SRCS   := $(filter-out ngx_welby_module/ngx_%,\
                 $(wildcard ngx_welby_module/welby_*.c))
UNIT_SRCS   := $(wildcard t/unit/*.c)
UNIT_BINS   := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
UNIT_CFLAGS := -std=c99 -g -O1 -Wall -Wextra -Werror -Ingx_welby_module \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: all deps test test-unit test-e2e test-asan fuzz fuzz-smoke run clean \
        bench audit-verify test-nginx

all: $(BUILD)/ngx_http_welby_module.so

# welby_apt PACKAGES: installs only those dpkg says are missing.
define welby_apt
	@missing=""; \
	for p in $(1); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing missing Debian packages:$$missing"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call welby_apt,$(DEB_PACKAGES))

# welby_configure DIR CC_OPT LD_OPT: a private copy of the nginx tree, so
# nothing is ever written under /usr/share.
define welby_configure
	rm -rf $(1)
	mkdir -p $(1)
	cp -a $(NGINX_SRC)/. $(1)/
	. $(NGINX_SRC)/conf_flags 2>/dev/null || NGX_CONF_FLAGS=(--with-compat \
	    --with-http_ssl_module --with-http_v2_module \
	    --with-http_realip_module); \
	cd $(1) && { [ -x configure ] && c=./configure || c=auto/configure; } \
	&& $$c "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt='$(2)' --with-ld-opt='$(3)' \
	    --add-dynamic-module=$(CURDIR) > configure.log 2>&1 \
	|| { grep -E 'error|welby' configure.log; exit 1; }
endef

SHELL := /bin/bash

$(BUILD)/nginx/objs/Makefile: config | deps
	$(call welby_configure,$(BUILD)/nginx,$(CC_OPT),$(LD_OPT))

$(BUILD)/ngx_http_welby_module.so: $(BUILD)/nginx/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/ngx_http_welby_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/asan/objs/Makefile: config | deps
	$(call welby_configure,$(BUILD)/asan,$(ASAN_OPT),$(ASAN_OPT))

$(BUILD)/asan/ngx_http_welby_module.so: $(BUILD)/asan/objs/Makefile \
        $(MODULE_SRCS)
	$(MAKE) -C $(BUILD)/asan -f objs/Makefile modules
	cp $(BUILD)/asan/objs/ngx_http_welby_module.so $@.tmp && mv -f $@.tmp $@

# Pure-C unit tests link the nginx-free sources alone.
$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(PURE_SRCS) \
        $(wildcard ngx_welby_module/welby_*.h) | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(PURE_SRCS) -ljansson -lcrypto -lm

# libFuzzer targets (clang), one per pure-C parser; FUZZ_SECONDS each.
FUZZ_SRCS    := $(wildcard t/fuzz/*.c)
FUZZ_BINS    := $(patsubst t/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 60

$(BUILD)/fuzz/%: t/fuzz/%.c $(PURE_SRCS) \
        $(wildcard ngx_welby_module/welby_*.h) | deps
	@mkdir -p $(BUILD)/fuzz/corpus-$*
	clang -g -O1 -Ingx_welby_module \
	    -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< $(PURE_SRCS) \
	    -ljansson -lcrypto -lm

fuzz: $(FUZZ_BINS)
	@set -o pipefail; for f in $(FUZZ_BINS); do \
	    echo "fuzzing $$(basename $$f) for $(FUZZ_SECONDS) s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	        -artifact_prefix=$(BUILD)/fuzz/ \
	        -print_final_stats=1 $$(dirname $$f)/corpus-$$(basename $$f) \
	        2>&1 | tail -12 || exit 1; \
	done

# The short run inside make test.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10

test: test-unit fuzz-smoke test-e2e

test-unit: deps $(UNIT_BINS)
	$(PROVE) $(UNIT_BINS)

test-e2e: all
	$(PROVE) -j$(PROVE_JOBS) -I t/lib t/

test-asan: deps $(BUILD)/asan/ngx_http_welby_module.so $(UNIT_BINS)
	$(PROVE) $(UNIT_BINS)
	WELBY_MODULE=$(BUILD)/asan/ngx_http_welby_module.so WELBY_SANITIZE=1 \
	    $(PROVE) -j$(PROVE_JOBS) -I t/lib t/

# nginx-tests without the module and with welby on at http level, test by
# test (t/nginx-tests/run --help); WELBY_SANITIZE=1 uses the ASan build.
NGINX_TESTS_MODULE := $(if $(WELBY_SANITIZE),$(BUILD)/asan,$(BUILD))
NGINX_TESTS_MODULE := $(NGINX_TESTS_MODULE)/ngx_http_welby_module.so

test-nginx: deps $(NGINX_TESTS_MODULE)
	$(call welby_apt,$(NGINX_TESTS_PACKAGES))
	NGINX_TESTS='$(abspath $(NGINX_TESTS))' \
	    WELBY_MODULE='$(NGINX_TESTS_MODULE)' NGINX_BIN='$(NGINX_BIN)' \
	    WELBY_SANITIZE='$(WELBY_SANITIZE)' \
	    NGINX_TESTS_JOBS='$(PROVE_JOBS)' t/nginx-tests/run

run: all
	conf/demo/run

# Throughput ratios against plain proxy_pass and the anchors (njs, and the
# ModSecurity-nginx connector with CRS for the WAF), with wrk
# (conf/bench/run --help); exit status 1 when a floor fails.
bench: deps all
	$(call welby_apt,$(BENCH_PACKAGES))
	conf/bench/run

# Checks the hash chains of audit files: make audit-verify FILE="a.log b.log"
audit-verify:
	@test -n "$(FILE)" || { echo "usage: make audit-verify FILE=..."; exit 2; }
	conf/audit-verify $(FILE)

clean:
	rm -rf $(BUILD)

# The same targets by their relative names (make build/asan/...so,
# make build/fuzz/token): the rules above are written with $(BUILD).
build/%: $(BUILD)/% ;
