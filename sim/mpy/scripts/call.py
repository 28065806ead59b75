# Call a function of a firmware test module and print its result as JSON (sim/oimon_sim/bench_log.py
# long runs: power-cut soak, parser fuzzing): argv = module function [int args...];
# prints "RESULT {json}".
import sys
import json

mod = __import__(sys.argv[1])
r = getattr(mod, sys.argv[2])(*[int(a) for a in sys.argv[3:]])
print('RESULT', json.dumps(r))
