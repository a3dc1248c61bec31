# Terraform targets, included by the main Makefile (-include mk/*.mk).
#
# Offline (CI): tf-fmt, checkov, tf-check. Online (needs the provider registry and Google credentials): plan, deploy.
# checkov lives in its own virtualenv: installed into .venv it downgrades python-dateutil below what kubernetes needs
# and overwrites python-hcl2's `hcl2` package.

PY              ?= python3
TF              ?= terraform
TF_DIR          := terraform
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: tf-fmt checkov tf-check plan deploy

tf-fmt: ## terraform fmt -check on terraform/ (offline)
	@command -v $(TF) >/dev/null 2>&1 || { echo "tf-fmt: '$(TF)' not found on PATH; install Terraform >= 1.9" >&2; exit 1; }
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

plan: ## terraform init + plan (NEEDS network to the provider registry and Google credentials)
	@echo "plan: needs network access (provider download) and Google credentials (gcloud auth application-default login)." >&2
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) plan -input=false

deploy: ## terraform init + apply (NEEDS network and Google credentials; see terraform/README.md)
	@echo "deploy: needs network access (provider download) and Google credentials; applies terraform/terraform.tfvars." >&2
	$(TF) -chdir=$(TF_DIR) init -input=false
	$(TF) -chdir=$(TF_DIR) apply -input=false
