# kafkasync — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TEMPORAL_CLI_VERSION := v1.5.1
VERSITYGW_VERSION := v1.8.0
TEMPORAL_SERVER_VERSION := v1.32.2
TEMPORAL_UI_SERVER_VERSION := v2.42.1
# The Temporal server needs a newer Go than the project; the go command fetches this one from the
# Go module proxy for that build only.
TEMPORAL_GOTOOLCHAIN := go1.27.3
# Keep in step with deploy/kafka/pom.xml and docker-compose.yml (a test checks).
KAFKA_VERSION := 4.1.1
export PATH := $(BIN):$(PATH)

.PHONY: help run test bench build tools deps lint clean histories

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-8s %s\n", $$1, $$2}'

run: tools build ## install what is missing, build, start the whole pipeline with sample jobs (Ctrl-C stops it)
	$(BIN)/kafkasync dev --demo

test: tools ## run every test against real servers on loopback (what CI runs); screenshots land in test-output/
	$(GO) vet ./...
	KAFKASYNC_SCREENSHOTS=$(CURDIR)/test-output/screenshots $(GO) test -p 1 -count=1 -timeout 25m ./...

bench: tools ## measure kafkasync against sftp, lftp and rclone (about half an hour); writes bench/RESULTS.md
	$(GO) run ./bench -out bench/RESULTS.md $(BENCHFLAGS)

build: ## build bin/kafkasync
	$(GO) build -o $(BIN)/kafkasync ./cmd/kafkasync

tools: deps $(BIN)/temporal $(BIN)/temporal-server $(BIN)/versitygw $(BIN)/kafka/libs/kafka_2.13-$(KAFKA_VERSION).jar ## build the Temporal server, its Web UI, the Temporal CLI and the S3 server, fetch the Kafka broker, into bin/ (once)

# From the system's packages: PostgreSQL (the audit database), Chromium (the dashboard's browser
# test), a Java runtime and Maven (the Kafka broker), and the benchmark's peers: OpenSSH's sshd,
# lftp, rclone and the aws CLI (a smoke run of the benchmark is part of the tests). The Go tools
# build from the Go module proxy; the Kafka broker comes from Maven Central.
deps: ## install the system packages that are missing (apt-get)
	@missing=; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	command -v lftp >/dev/null 2>&1 || missing="$$missing lftp"; \
	command -v rclone >/dev/null 2>&1 || missing="$$missing rclone"; \
	test -x /usr/bin/aws || missing="$$missing awscli"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/temporal:
	@echo "building the Temporal CLI $(TEMPORAL_CLI_VERSION) into bin/ (a few minutes, once)"
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

# The Temporal server, its SQL tool with the schema files of the same version, and the Web UI server.
# bin/temporal-server comes last, so that it exists only when everything else does.
$(BIN)/temporal-server:
	@echo "building the Temporal server $(TEMPORAL_SERVER_VERSION) and Web UI server $(TEMPORAL_UI_SERVER_VERSION) into bin/ (a few minutes, once)"
	rm -rf $(BIN)/.temporal-build && mkdir -p $(BIN)/.temporal-build/ui
	GOTOOLCHAIN=$(TEMPORAL_GOTOOLCHAIN) GOBIN=$(BIN)/.temporal-build $(GO) install \
	  go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	GOTOOLCHAIN=$(TEMPORAL_GOTOOLCHAIN) GOBIN=$(BIN)/.temporal-build/ui $(GO) install github.com/temporalio/ui-server/v2/cmd/server@$(TEMPORAL_UI_SERVER_VERSION)
	src=$$(GOTOOLCHAIN=$(TEMPORAL_GOTOOLCHAIN) $(GO) mod download -json go.temporal.io/server@$(TEMPORAL_SERVER_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	  rm -rf $(BIN)/temporal-schema && cp -r "$$src/schema/postgresql/v12" $(BIN)/temporal-schema && chmod -R u+w $(BIN)/temporal-schema
	mv $(BIN)/.temporal-build/sql $(BIN)/temporal-sql-tool
	mv $(BIN)/.temporal-build/ui/server $(BIN)/temporal-ui-server
	mv $(BIN)/.temporal-build/server $(BIN)/temporal-server
	rm -rf $(BIN)/.temporal-build

$(BIN)/versitygw:
	@echo "building versitygw $(VERSITYGW_VERSION) into bin/ (about two minutes, once)"
	GOBIN=$(BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

# The broker's jar and its runtime dependencies, resolved by Maven from Maven Central.
$(BIN)/kafka/libs/kafka_2.13-$(KAFKA_VERSION).jar: deploy/kafka/pom.xml
	@echo "fetching Apache Kafka $(KAFKA_VERSION) and its dependencies from Maven Central into bin/kafka/ (once)"
	rm -rf $(BIN)/kafka
	mvn -q -B -f deploy/kafka/pom.xml -Dkafka.version=$(KAFKA_VERSION) dependency:copy-dependencies \
	  -DincludeScope=runtime -DoutputDirectory=$(BIN)/kafka/libs

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet ./...

clean: ## remove bin/ and the dev stack's data (.kafkasync/)
	rm -rf $(BIN) .kafkasync test-output

histories: tools ## record new workflow histories for the replay test (after a deliberate workflow change)
	KAFKASYNC_WRITE_HISTORY=$(CURDIR)/workflows/testdata $(GO) test -count=1 -run TestPipelineEndToEnd ./internal/e2e/
