# The oimon firmware's MicroPython manifest: the one list of what goes onto the device.
#
# - Freezing into an image (no .py/.mpy files on the board's filesystem, no heap for bytecode):
#       cd micropython/ports/esp32
#       make BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=/path/to/oimon/firmware/manifest.py
#   then `oimon flash --firmware build-ESP32_GENERIC_S3/firmware.bin` (docs/architecture.md).
# - A bundle for `oimon deploy` (the development path, and the virtual device): tools/bundle.py
#   reads this file, compiles every module with mpy-cross into build/bundle/ARCH/ and writes
#   bundle.json (files, sha256, protocol version); `make firmware` builds the xtensawin one.
#
# Layout on the device: the firmware's own modules at the filesystem root (flat), the shared
# package in /lib/oimon_common. Host-only code (oimon_common.decode, the host library) and the
# unix side of the HAL (sim/mpy) are never listed here, so they never ship to the device.
include("$(PORT_DIR)/boards/manifest.py")

# device-only modules: firmware/
for _m in ("app", "alarm", "ads131m04", "auth", "board", "cmds", "config", "detect", "dsp",
           "flashlog", "hal", "hal_esp32", "hx711", "imufall", "lsm6dso", "rawpart",
           "retighten_dev", "supervisor", "slotstore", "rv3028", "battery"):
    module(_m + ".py", opt=1)

# the shared layer: common/oimon_common, as the package oimon_common
for _m in ("__init__", "protocol", "limits", "events", "calib", "dates", "exercise", "settings",
           "filters"):
    module("oimon_common/%s.py" % _m, base_path="../common", opt=1)

# main.py stays a source file on the filesystem: MicroPython runs it by name after boot
