# The test command CI runs (see README.md): installs what the tests need,
# then checks formatting, vet, a static CGO-free build, and every test.
.PHONY: test build deps fuzz clean race

GO ?= go

build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o bin/portolan ./cmd/portolan

deps:
	bash scripts/deps.sh

test:
	bash scripts/test.sh

# The whole module under the race detector (make test leaves out the
# end-to-end packages, which are slow under it).
race:
	go test -race -count=1 -timeout 60m ./...

# Longer fuzzing than the seed runs in `make test`: FUZZTIME per target.
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} bash scripts/fuzz.sh

clean:
	rm -rf bin man
