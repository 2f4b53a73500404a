GO ?= go
TAGS ?= netgo
BUILD := build
# The one version (version/version.go): tpm11 --version, CK_INFO and the package.
VERSION := $(shell sed -n 's/^const Version = "\(.*\)"/\1/p' version/version.go)
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null)
DEBARCH := $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)

# make install PREFIX=/usr DESTDIR=/tmp/stage; every directory can be set.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/$(MULTIARCH)
PKCS11DIR ?= $(LIBDIR)/pkcs11
DATADIR ?= $(PREFIX)/share
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/tpm11
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# p11-kit reads module registrations from /usr/share/p11-kit/modules
# (packages; "module:" relative to its module directory) and from
# /etc/pkcs11/modules (the administrator): a /usr install registers in the
# first, any other prefix in the second with the module's absolute path.
ifeq ($(PREFIX),/usr)
P11KITDIR ?= /usr/share/p11-kit/modules
P11KITMODULE ?= libtpm11.so
ZSHCOMPDIR ?= $(DATADIR)/zsh/vendor-completions
else
P11KITDIR ?= /etc/pkcs11/modules
P11KITMODULE ?= $(PKCS11DIR)/libtpm11.so
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
endif

# The Debian package is built by nfpm, fetched through the Go module proxy
# at a fixed version (not a dependency of the module).
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB := $(BUILD)/tpm11_$(VERSION)_$(DEBARCH).deb
STAGE := $(BUILD)/pkgroot

CLI_SRC := $(shell find cmd attestation tpm tpmtoken asyncq ck internal version -name '*.go') go.mod

.PHONY: build test demo bench install uninstall package clean test-go test-c test-clients test-cli test-package man completions

build: $(BUILD)/libtpm11.so $(BUILD)/tpm11 man completions

# Packed relative relocations (DT_RELR): the module's ~32,000 pointer
# relocations, which every dlopen reads and applies, take 12 KB instead of
# 765 KB (the .so shrinks by a tenth). Linking needs binutils >= 2.38,
# loading glibc >= 2.36 (Debian 12; the package depends on it); a linker
# without it links the plain way.
RELR := $(shell printf 'int x; int *p = &x;' | gcc -x c -shared -fPIC -Wl,--fatal-warnings,-z,pack-relative-relocs -o /dev/null - 2>/dev/null && echo ,-z,pack-relative-relocs)

$(BUILD)/libtpm11.so: $(shell find module tpm tpmtoken asyncq ck internal version -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.map') go.mod
	@mkdir -p $(BUILD)
	$(GO) build -tags '$(TAGS)' -trimpath -buildmode=c-shared \
		-ldflags="-s -w -extldflags=-Wl,--version-script=$(CURDIR)/module/exports.map$(RELR)" \
		-o $@ ./module
	@rm -f $(BUILD)/libtpm11.h

$(BUILD)/tpm11: $(CLI_SRC)
	@mkdir -p $(BUILD)
	$(GO) build -tags '$(TAGS)' -trimpath -buildmode=pie -ldflags='-s -w' -o $@ ./cmd/tpm11

# Man pages from the command tree (a build with the mangen tag carries the
# generator; the installed binary does not). SOURCE_DATE_EPOCH: the last
# commit's date, so the pages do not change with the build day.
man: $(BUILD)/man/tpm11.1
$(BUILD)/man/tpm11.1: $(CLI_SRC)
	@rm -rf $(BUILD)/man
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
		$(GO) run -tags '$(TAGS) mangen' ./cmd/tpm11 gen-man $(BUILD)/man

completions: $(BUILD)/completions/tpm11.bash
$(BUILD)/completions/tpm11.bash: $(BUILD)/tpm11
	@mkdir -p $(BUILD)/completions
	$(BUILD)/tpm11 completion bash > $(BUILD)/completions/tpm11.bash
	$(BUILD)/tpm11 completion zsh > $(BUILD)/completions/_tpm11
	$(BUILD)/tpm11 completion fish > $(BUILD)/completions/tpm11.fish

test: build test-go test-c test-clients test-cli test-package

# The PQC tests run on wolfTPM's fwtpm_server (swtpm has no ML-DSA/ML-KEM),
# built once by testdata/fwtpm.sh into a cache outside the checkout. If it
# cannot be built, those tests fail (TPM11_FWTPM names no program); the
# rest run on swtpm as ever.
test-go:
	FW=$$(./testdata/fwtpm.sh) || FW=unbuilt; \
	TPM11_FWTPM="$$FW" $(GO) test -race -count=1 -timeout 600s ./...
	cd interop && $(GO) test -count=1 -timeout 1200s ./...

test-c: build
	./testdata/run-c-tests.sh
	./testdata/robust-test.sh
	./testdata/faults-test.sh
	./testdata/pqc-test.sh

test-clients: build
	./testdata/pkcs11-tool-test.sh
	./testdata/clients-test.sh
	./testdata/forking-servers-test.sh
	./testdata/demo.sh >/dev/null  # the README's first command stays true

test-cli: build
	./testdata/cli-test.sh
	./testdata/shared-store-test.sh
	./testdata/parallel-cli-test.sh
	./testdata/attest-test.sh
	./testdata/acme-test.sh
	./testdata/migrate-test.sh

# Builds the .deb, installs it on this machine (root, dpkg), checks it, and
# removes it; skipped with a message otherwise.
test-package: build
	./testdata/package-test.sh

demo: build
	./testdata/demo.sh

# One table, every figure measured in the same run on fresh swtpms: the raw
# go-tpm floor and libtpm11.so driven from C (testdata/bench.sh).
bench: build
	./testdata/bench.sh

# The module in the multiarch pkcs11 directory, registered with p11-kit
# (p11-kit list-modules, GnuTLS, p11-kit-proxy; the module name is the file
# name), the tool, its man pages and shell completions.
install: build
	install -D -m 0755 $(BUILD)/libtpm11.so $(DESTDIR)$(PKCS11DIR)/libtpm11.so
	install -D -m 0755 $(BUILD)/tpm11 $(DESTDIR)$(BINDIR)/tpm11
	install -d $(DESTDIR)$(P11KITDIR) $(DESTDIR)$(MANDIR)/man1
	echo "module: $(P11KITMODULE)" > $(DESTDIR)$(P11KITDIR)/tpm11.module
	chmod 0644 $(DESTDIR)$(P11KITDIR)/tpm11.module
	install -m 0644 $(BUILD)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -D -m 0644 $(BUILD)/completions/tpm11.bash $(DESTDIR)$(BASHCOMPDIR)/tpm11
	install -D -m 0644 $(BUILD)/completions/_tpm11 $(DESTDIR)$(ZSHCOMPDIR)/_tpm11
	install -D -m 0644 $(BUILD)/completions/tpm11.fish $(DESTDIR)$(FISHCOMPDIR)/tpm11.fish
	install -D -m 0644 -t $(DESTDIR)$(DOCDIR) README.md CHANGELOG.md LICENSE
	install -D -m 0644 module/tpm11.h $(DESTDIR)$(INCLUDEDIR)/tpm11.h

uninstall:
	rm -f $(DESTDIR)$(PKCS11DIR)/libtpm11.so $(DESTDIR)$(BINDIR)/tpm11 $(DESTDIR)$(P11KITDIR)/tpm11.module
	rm -f $(DESTDIR)$(INCLUDEDIR)/tpm11.h
	rm -f $(DESTDIR)$(MANDIR)/man1/tpm11.1 $(DESTDIR)$(MANDIR)/man1/tpm11-*.1
	rm -f $(DESTDIR)$(BASHCOMPDIR)/tpm11 $(DESTDIR)$(ZSHCOMPDIR)/_tpm11 $(DESTDIR)$(FISHCOMPDIR)/tpm11.fish
	rm -f $(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(DOCDIR)/CHANGELOG.md $(DESTDIR)$(DOCDIR)/LICENSE
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

# The Debian package: what `make install PREFIX=/usr` stages, man pages and
# changelog compressed as Debian wants them, plus packaging/ (nfpm.yaml,
# copyright, the /etc/tpm11/config conffile, maintainer scripts).
package: $(DEB)
$(DEB): build $(wildcard packaging/*)
	rm -rf $(STAGE)
	$(MAKE) --no-print-directory install PREFIX=/usr DESTDIR=$(CURDIR)/$(STAGE)
	gzip -9n $(STAGE)/usr/share/man/man1/*.1
	gzip -9n $(STAGE)/usr/share/doc/tpm11/CHANGELOG.md
	VERSION=$(VERSION) ./packaging/debian-changelog | gzip -9n > $(STAGE)/usr/share/doc/tpm11/changelog.gz
	rm $(STAGE)/usr/share/doc/tpm11/LICENSE  # packaging/copyright points to common-licenses
	VERSION=$(VERSION) DEBARCH=$(DEBARCH) $(NFPM) package --packager deb --config packaging/nfpm.yaml --target $@

clean:
	rm -rf $(BUILD)
