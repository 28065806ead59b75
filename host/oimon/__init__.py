"""oimon host tools: flash, deploy, calibrate, configure, record, log, plot, report, retighten."""
__version__ = "0.1.0"
