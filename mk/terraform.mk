# Terraform targets, included by the main Makefile (-include mk/*.mk).
#
# Offline (CI): terraform, tf-fmt, checkov, tf-check. Online (needs the provider registry and Google credentials):
# plan, deploy. checkov lives in its own virtualenv: installed into .venv it downgrades python-dateutil below what
# kubernetes needs and overwrites python-hcl2's `hcl2` package.
#
# The offline checks need a Terraform CLI (fmt, and tests/terraform evaluating variables.tf + locals.tf). `terraform`
# on PATH is used when there is one. Otherwise `make terraform` builds OpenTofu, the MPL fork of Terraform with the same
# language and CLI, from its Go module at a pinned release, into the cache shared with the Kubernetes build. Terraform
# itself cannot be built from the Go module proxy: its go.mod replaces nested modules by local directories that the
# module's zip leaves out, so `go install` refuses it and a build from the zip finds nothing there.

PY              ?= python3
TF_DIR          := terraform
RSR_CACHE       := $(or $(RSR_CACHE_DIR),$(HOME)/.cache/rsr)
TOFU_VERSION    := 1.12.6
TOFU_BIN        := $(RSR_CACHE)/tofu-$(TOFU_VERSION)/tofu
TF              ?= $(or $(shell command -v terraform 2>/dev/null),$(TOFU_BIN))
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: terraform tf-fmt checkov tf-check tf-test plan deploy

terraform: ## a Terraform CLI for the offline checks: terraform on PATH, else OpenTofu built from its Go module (cached)
	@if [ "$(TF)" = "$(TOFU_BIN)" ]; then $(MAKE) --no-print-directory $(TOFU_BIN); else echo "terraform: $(TF)"; fi

# CGO off and -trimpath: a static binary that does not depend on where the module cache is. A failed build leaves no
# binary behind, so the next run tries again instead of testing with half a tool.
$(TOFU_BIN):
	@command -v go >/dev/null 2>&1 || { echo "terraform: no terraform on PATH and no Go toolchain to build OpenTofu $(TOFU_VERSION)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	@echo "terraform: not on PATH; building OpenTofu $(TOFU_VERSION) from its Go module (once, several minutes)" >&2
	@src="$$(go mod download -json github.com/opentofu/opentofu@v$(TOFU_VERSION) | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" && \
	  cd "$$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o $@.partial ./cmd/tofu
	@mv $@.partial $@
	@$@ version

tf-fmt: terraform ## terraform fmt -check on terraform/ (offline)
	$(TF) fmt -check -recursive -diff $(TF_DIR)/

$(CHECKOV_STAMP):
	@rm -rf $(CHECKOV_VENV)
	$(PY) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION) || { \
	  echo "checkov: FAILED to install checkov==$(CHECKOV_VERSION) into $(CHECKOV_VENV)." >&2; \
	  echo "checkov: the security scan did not run; this is a failure, not a skip." >&2; \
	  rm -rf $(CHECKOV_VENV); exit 1; }
	@touch $@

checkov: $(CHECKOV_STAMP) ## static security scan of terraform/ (own venv; any failed check fails)
	$(CHECKOV_VENV)/bin/checkov -d $(TF_DIR) --framework terraform --skip-download --quiet --compact

tf-check: tf-fmt checkov ## offline Terraform checks: fmt + checkov

tf-test: $(STAMP) terraform $(CHECKOV_STAMP) ## tests/terraform: the module, its monitoring and the runbook, offline (a Terraform CLI, checkov)
	$(BIN)/pytest -q -m terraform

plan: ## terraform init + plan (NEEDS network to the provider registry and Google credentials)
	@echo "plan: needs network access (provider download) and Google credentials (gcloud auth application-default login)." >&2
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) plan -input=false

deploy: ## terraform init + apply (NEEDS network and Google credentials; see terraform/README.md)
	@echo "deploy: needs network access (provider download) and Google credentials, and gcloud logged in for the policy check (validate_policy_in_build); applies terraform/terraform.tfvars." >&2
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) apply -input=false
