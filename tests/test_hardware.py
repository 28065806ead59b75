"""hardware/pinmap.json is consistent, and firmware/board.py is generated from it."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINMAP = json.loads((ROOT / "hardware" / "pinmap.json").read_text())

# ESP32-S3 (datasheet v1.x, ch. 2 "Pins"): GPIO0-21 and 26-48 exist.
ESP32S3_GPIO = set(range(0, 22)) | set(range(26, 49))
STRAPPING = {0, 3, 45, 46}
FLASH_PSRAM = set(range(26, 33)) | set(range(33, 38))   # SPI0/1 quad flash+PSRAM; 33-37 octal
USB = {19, 20}
UART0 = {43, 44}
ADC1 = set(range(1, 11))
FORBIDDEN = STRAPPING | FLASH_PSRAM | USB | UART0


def load_board():
    spec = importlib.util.spec_from_file_location("board_under_test", ROOT / "firmware" / "board.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_board_py_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "hardware" / "gen_board.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_board_matches_pinmap():
    board = load_board()
    for name, p in PINMAP["pins"].items():
        assert getattr(board, name) == p["gpio"], name
    for name, v in PINMAP["constants"].items():
        assert getattr(board, name) == v, name
    assert board.MODULE == PINMAP["module"]


@pytest.mark.parametrize("name", sorted(PINMAP["pins"]))
def test_pin_is_usable_gpio(name):
    g = PINMAP["pins"][name]["gpio"]
    assert g in ESP32S3_GPIO, "%s: GPIO%d does not exist on the ESP32-S3" % (name, g)
    assert g not in FORBIDDEN, "%s: GPIO%d is strapping/flash/PSRAM/USB/UART0" % (name, g)


def test_no_pin_used_twice():
    seen = {}
    for name, p in PINMAP["pins"].items():
        assert p["gpio"] not in seen, "GPIO%d used by %s and %s" % (p["gpio"], seen.get(p["gpio"]), name)
        seen[p["gpio"]] = name


def test_analog_pins_on_adc1():
    for name, p in PINMAP["pins"].items():
        if p["dir"] == "ain":
            assert p["gpio"] in ADC1, "%s must be on ADC1 (ADC2 conflicts with Wi-Fi)" % name


def test_required_pins_present():
    need = {"ADC_SCK", "ADC_MOSI", "ADC_MISO", "ADC_CS", "ADC_DRDY", "ADC_SYNC_RESET", "BUZZER",
            "VIB", "LED", "BUTTON", "VBAT_SENSE", "HX711_SCK", "HX711_DOUT0"}
    assert need <= set(PINMAP["pins"])


def test_adc_clock_gives_1ksps():
    c = PINMAP["constants"]
    # ADS131M04: f_MOD = f_CLKIN / 2, f_DATA = f_MOD / OSR (high-resolution mode)
    assert c["ADC_CLKIN_HZ"] // 2 // c["ADC_OSR"] == 1000
    assert c["ADC_SPI_BAUD"] <= 25_000_000
    for k in range(4):
        assert c["ADC_GAIN%d" % k] in (1, 2, 4, 8, 16, 32, 64, 128)
