GO ?= go
TAGS ?= netgo
BUILD := build

.PHONY: build test demo bench install clean test-go test-c test-clients

build: $(BUILD)/libtpm11.so $(BUILD)/tpm11

$(BUILD)/libtpm11.so: $(shell find module tpm tpmtoken asyncq ck internal -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.map') go.mod
	@mkdir -p $(BUILD)
	$(GO) build -tags '$(TAGS)' -buildmode=c-shared \
		-ldflags="-s -w -extldflags=-Wl,--version-script=$(CURDIR)/module/exports.map" \
		-o $@ ./module
	@rm -f $(BUILD)/libtpm11.h

$(BUILD)/tpm11: $(shell find cmd tpm tpmtoken asyncq ck internal -name '*.go') go.mod
	@mkdir -p $(BUILD)
	$(GO) build -tags '$(TAGS)' -o $@ ./cmd/tpm11

test: build test-go test-c test-clients

test-go:
	$(GO) test -race -count=1 -timeout 600s ./...

test-c: build
	./testdata/run-c-tests.sh

test-clients: build
	./testdata/pkcs11-tool-test.sh
	./testdata/clients-test.sh
	./testdata/demo.sh >/dev/null  # the README's first command stays true

demo: build
	./testdata/demo.sh

# One table, every figure measured in the same run on fresh swtpms: the raw
# go-tpm floor and libtpm11.so driven from C (testdata/bench.sh).
bench: build
	./testdata/bench.sh

# p11-kit finds the module through its registration file (p11-kit
# list-modules, GnuTLS, p11-kit-proxy); the module name is the file name.
install: build
	install -D -m 0755 $(BUILD)/libtpm11.so $(DESTDIR)/usr/lib/$(shell gcc -print-multiarch)/pkcs11/libtpm11.so
	install -D -m 0755 $(BUILD)/tpm11 $(DESTDIR)/usr/bin/tpm11
	install -d $(DESTDIR)/usr/share/p11-kit/modules
	echo "module: libtpm11.so" > $(DESTDIR)/usr/share/p11-kit/modules/tpm11.module

clean:
	rm -rf $(BUILD)
