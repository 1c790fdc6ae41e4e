# mod_http_upload_hmac: ejabberd module + NIF + libuv upload server.
#   make          build everything into priv/ and ebin/
#   make run      install what is missing (as root), build, start a private ejabberd with the
#                 module and the upload server on embedded defaults
#   make check    install what is missing (as root), build (release, ASan/UBSan, fuzzers),
#                 run every test; ends with "N passed, N failed"
#   make bench    benchmarks against reference servers
#   make cluster-demo  install what is missing (as root), build, start two clustered ejabberd
#                 nodes, PostgreSQL, two upload servers on one storage directory and HAProxy,
#                 all private on 127.0.0.1, until Ctrl-C
#   make fresh-check  (root) purge what deps installs, clone afresh, run the README's commands
#   make install  build, then install the module, NIF, server, systemd units and man page under
#                 PREFIX (default /usr/local; Debian: PREFIX=/usr), staged under DESTDIR if set
#   make uninstall    remove what install put (never storage_dir or configuration)

# Debian 12 packages the build, the tests and the demo need: the build (libraries and their
# headers), ejabberd and the XMPP clients, the peers and clients of the end-to-end tests
# (Prosody, Gajim under Xvfb, Converse.js in Chromium), the references of make bench (nginx,
# wrk), promtool for the metrics text, systemd for the unit's tests.
DEB_PACKAGES := make gcc clang libc6-dev libuv1-dev libssl-dev libyaml-dev libsqlite3-dev \
                libjansson-dev node-llhttp erlang-nox erlang-dev erlang-eunit ejabberd go-sendxmpp \
                python3 python3-slixmpp python3-aiohttp curl openssl ca-certificates procps nodejs sqlite3 \
                nginx-light libnginx-mod-http-dav-ext wrk systemd systemd-container groff-base strace \
                prometheus prosody prosody-modules gajim xvfb xdotool imagemagick python3-pil \
                fonts-dejavu-core dbus chromium libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev \
                libmagic-dev libpq-dev postgresql haproxy
# Base tools a new machine of this kind has and fresh-check itself needs; everything else in
# DEB_PACKAGES is purged by fresh-check (nodejs is the image's own Node, not Debian's; systemd
# and groff-base, which man-db needs, are never purged).
FRESH_KEEP   := make gcc libc6-dev python3 curl openssl ca-certificates procps nodejs \
                systemd groff-base

# Recursive (=), not simple (:=): these paths exist only once `deps` has installed ejabberd, so
# they are looked up when a recipe needs them, never when this file is parsed. The targets
# that install packages build through a sub-make for the same reason.
EJABBERD_INC  = $(firstword $(wildcard /usr/lib/*/ejabberd-*/include))
EJABBERD_EBIN = $(firstword $(wildcard /usr/lib/*/ejabberd-*/ebin))
XMPP_INC      = $(firstword $(wildcard /usr/lib/erlang/lib/p1_xmpp-*/include))
ERLC_FLAGS    = +debug_info +warnings_as_errors -I $(EJABBERD_INC) -I $(XMPP_INC) -pa $(EJABBERD_EBIN)
ERL_SRC      := $(wildcard src/*.erl)
BEAMS        := $(ERL_SRC:src/%.erl=ebin/%.beam)
JOBS         ?= 2

.PHONY: all c beams deps run cluster-demo check bench bench-smoke fresh-check clean install uninstall

all: c beams

c:
	$(MAKE) -j$(JOBS) -C c_src

beams: $(BEAMS)

ebin/%.beam: src/%.erl $(wildcard src/*.hrl)
	@mkdir -p ebin
	@[ -n "$(EJABBERD_INC)" ] && [ -n "$(XMPP_INC)" ] || \
	  { echo "ejabberd's headers are missing: run 'make deps' as root (or install ejabberd erlang-dev)"; exit 1; }
	erlc $(ERLC_FLAGS) -o ebin $<

# Installs missing Debian packages when run as root (apt-get update once, then install).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Missing Debian packages:$$missing (run as root to install them)"; exit 1; fi; \
	  echo "Installing:$$missing"; \
	  rc_policy=/usr/sbin/policy-rc.d; own_policy=0; \
	  if [ ! -e $$rc_policy ]; then printf '#!/bin/sh\nexit 101\n' > $$rc_policy; chmod +x $$rc_policy; own_policy=1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  status=$$?; [ $$own_policy = 1 ] && rm -f $$rc_policy; [ $$status = 0 ] || exit $$status; \
	fi

run: deps
	$(MAKE) all
	/usr/bin/python3 test/lib/demo.py

# The scale-out deployment (README "Cluster demo"; test/lib/cluster.py, test/e2e/test_cluster.py).
cluster-demo: deps
	$(MAKE) all
	/usr/bin/python3 test/lib/cluster_demo.py

check: deps
	$(MAKE) all
	$(MAKE) -j$(JOBS) -C c_src unit
	$(MAKE) -j$(JOBS) -C c_src SAN=1
	$(MAKE) -j$(JOBS) -C c_src fuzzers
	/usr/bin/python3 test/run

# Benchmarks against nginx and ejabberd's built-in upload (optimised build: -O2).
bench: deps
	$(MAKE) all
	/usr/bin/python3 bench/run.py

bench-smoke: all
	/usr/bin/python3 bench/run.py --smoke

# The README on a machine without the packages: purge them, clone afresh, make check, make run.
fresh-check:
	test/fresh_check "$(filter-out $(FRESH_KEEP),$(DEB_PACKAGES))"

clean:
	$(MAKE) -C c_src clean
	rm -rf ebin

# ---- install ------------------------------------------------------------------------------
# Where a Debian operator looks (PREFIX=/usr is what a Debian package uses; /usr/local, the
# default, is the administrator's own tree). Every directory can be set on the command line.
#   $(SBINDIR)/hmac-upload-server                   the server (a daemon: sbin), run by the unit
#   $(MODDIR)/ebin/*.beam                           the module: an Erlang library directory, found
#   $(MODDIR)/priv/lib/hmac_upload_nif.so           by every Erlang VM when ERLANG_LIBDIR is the
#   $(MODDIR)/priv/bin/hmac-upload-server -> sbin   VM's own lib (PREFIX=/usr); managed mode
#                                                   starts priv/bin/, the same binary
#   $(SYSTEMDUNITDIR)/hmac-upload-server.service    external mode, and @.service per host
#   $(TMPFILESDIR)/mod_http_upload_hmac.conf        creates the default storage_dir for ejabberd
#   $(MANDIR)/man8/hmac-upload-server.8.gz          gzip -9n, as dh_compress does
#   $(DOCDIR)/README.md.gz, conf/mod_http_upload_hmac.yml   options; the example configuration
#                                                   (copy it to /etc/ejabberd/modules.d/ to enable)
prefix         ?= /usr/local
PREFIX         ?= $(prefix)
DESTDIR        ?=
SBINDIR        ?= $(PREFIX)/sbin
DATAROOTDIR    ?= $(PREFIX)/share
MANDIR         ?= $(DATAROOTDIR)/man
DOCDIR         ?= $(DATAROOTDIR)/doc/mod_http_upload_hmac
# autoconf's ERLANG_INSTALL_LIB_DIR: $(PREFIX)/lib/erlang/lib; with PREFIX=/usr that is Debian's
# Erlang root (/usr/lib/erlang/lib, where the erlang-p1-* packages put theirs), which every VM,
# ejabberd's included, searches at boot. Unversioned: a new install replaces the old one.
ERLANG_LIBDIR  ?= $(PREFIX)/lib/erlang/lib
MODDIR          = $(ERLANG_LIBDIR)/mod_http_upload_hmac
ifeq ($(PREFIX),/usr)
SYSTEMDUNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
TMPFILESDIR    ?= $(or $(shell pkg-config --variable=tmpfilesdir systemd 2>/dev/null),/usr/lib/tmpfiles.d)
else
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR    ?= $(PREFIX)/lib/tmpfiles.d
endif
# What the unit runs with: Debian's ejabberd configuration and system user.
EJABBERD_CONFIG ?= /etc/ejabberd/ejabberd.yml
EJABBERD_USER   ?= ejabberd
EJABBERD_GROUP  ?= ejabberd
INSTALL        ?= install
STAGE          := build/packaging
SUBST           = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@EJABBERD_CONFIG@|$(EJABBERD_CONFIG)|g' \
                      -e 's|@EJABBERD_USER@|$(EJABBERD_USER)|g' -e 's|@EJABBERD_GROUP@|$(EJABBERD_GROUP)|g'
# The template unit: the same service, with --host %i and the instance in its description.
TEMPLATE        = sed -e 's|^\(Exec[A-Za-z]*=.*--config [^ ]*\)|\1 --host %i|' \
                      -e 's|^Description=.*|&, virtual host %i|'

install: all
	@rm -rf $(STAGE) && mkdir -p $(STAGE)
	$(SUBST) packaging/hmac-upload-server.service.in > $(STAGE)/hmac-upload-server.service
	$(TEMPLATE) $(STAGE)/hmac-upload-server.service > $(STAGE)/hmac-upload-server@.service
	$(SUBST) packaging/mod_http_upload_hmac.tmpfiles.in > $(STAGE)/mod_http_upload_hmac.conf
	gzip -9n < doc/hmac-upload-server.8 > $(STAGE)/hmac-upload-server.8.gz
	gzip -9n < README.md > $(STAGE)/README.md.gz
	rm -rf $(DESTDIR)$(MODDIR)
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MODDIR)/ebin $(DESTDIR)$(MODDIR)/priv/lib \
	  $(DESTDIR)$(MODDIR)/priv/bin $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/conf
	$(INSTALL) -m 0755 priv/bin/hmac-upload-server $(DESTDIR)$(SBINDIR)/hmac-upload-server
	$(INSTALL) -m 0644 $(BEAMS) $(DESTDIR)$(MODDIR)/ebin/
	$(INSTALL) -m 0644 priv/lib/hmac_upload_nif.so $(DESTDIR)$(MODDIR)/priv/lib/
	ln -sfr $(DESTDIR)$(SBINDIR)/hmac-upload-server $(DESTDIR)$(MODDIR)/priv/bin/hmac-upload-server
	$(INSTALL) -m 0644 $(STAGE)/hmac-upload-server.service $(STAGE)/hmac-upload-server@.service \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(INSTALL) -m 0644 $(STAGE)/mod_http_upload_hmac.conf $(DESTDIR)$(TMPFILESDIR)/
	$(INSTALL) -m 0644 $(STAGE)/hmac-upload-server.8.gz $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 $(STAGE)/README.md.gz $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 conf/mod_http_upload_hmac.yml $(DESTDIR)$(DOCDIR)/conf/
	@rm -rf $(STAGE)
	@# On the live system (no DESTDIR), as a package's maintainer scripts would: create the
	@# default storage_dir, tell systemd, and say when ejabberd will not find the module alone.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  systemd-tmpfiles --create $(TMPFILESDIR)/mod_http_upload_hmac.conf || \
	    echo "warning: could not create the default storage_dir (is ejabberd installed?)"; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$(ERLANG_LIBDIR)" != \
	     "$$(erl -noshell -eval 'io:format("~s/lib", [code:root_dir()]), halt().')" ]; then \
	  echo "note: ejabberd does not search $(ERLANG_LIBDIR); add this line to /etc/ejabberd/vm.args:"; \
	  echo "  -pa $(MODDIR)/ebin"; \
	fi

# Removes exactly what install put (the module's own directories whole); never storage_dir,
# the configuration or anything under /etc.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/hmac-upload-server \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/hmac-upload-server.service \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/hmac-upload-server@.service \
	  $(DESTDIR)$(TMPFILESDIR)/mod_http_upload_hmac.conf \
	  $(DESTDIR)$(MANDIR)/man8/hmac-upload-server.8.gz
	rm -rf $(DESTDIR)$(MODDIR) $(DESTDIR)$(DOCDIR)
