# Harness checks on the i386 MicroPython: integers and viper words behave like the ESP32's.
import sys
import micropython


@micropython.viper
def _mul(a: int, b: int) -> int:
    return a * b


@micropython.viper
def _add(a: int, b: int) -> int:
    return a + b


def test_word_is_32_bits():
    assert sys.maxsize == 2147483647, sys.maxsize


def test_viper_multiply_wraps_at_32_bits():
    assert _mul(0x10000, 0x10000) == 0


def test_viper_add_wraps_to_negative():
    big = _add(0x3FFFFFFF, 0x3FFFFFFF)      # 0x7FFFFFFE, the largest even int32
    assert _add(big, 2) == -2147483647 - 1   # 0x80000000 read back as a signed word


def test_bytecode_ints_do_not_wrap():
    assert 0x10000 * 0x10000 == 1 << 32
