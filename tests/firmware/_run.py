# Runs one firmware test function on MicroPython: micropython _run.py MODULE FUNCTION
# Prints PASS and exits 0, or prints the MicroPython traceback and exits 1.
import sys

mod_name, fn_name = sys.argv[1], sys.argv[2]
try:
    mod = __import__(mod_name)
    getattr(mod, fn_name)()
except BaseException as e:  # noqa: B036 - report everything, including SystemExit
    sys.print_exception(e)
    sys.exit(1)
print("PASS")
