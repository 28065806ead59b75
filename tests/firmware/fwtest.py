# Helpers shared by the firmware tests on MicroPython (tests/firmware is on MICROPYPATH).
import os


def clean(folder):
    """Empty a test device's storage folder (and its log/ subfolder), keeping the folders."""
    for sub in ("/log", ""):
        try:
            for n in os.listdir(folder + sub):
                try:
                    os.remove(folder + sub + "/" + n)
                except OSError:
                    pass
        except OSError:
            pass
