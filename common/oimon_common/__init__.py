# oimon_common: the facts the device, the host and the simulator share (docs/architecture.md).
# A MicroPython package in /lib on the device, a CPython package on the host. Its modules import
# nothing outside the standard library (micropython's const where present) and each other.
