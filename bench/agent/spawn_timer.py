"""Times commands from spawn to the end of their answer, interleaved round by round.

Usage: spawn_timer.py ROUNDS REQUEST_JSON NAME=CMD… (CMD is run by the shell, with the request
on stdin). Each answer is checked to hold every requested id in "values". Prints per command:
median, p90, min (ms) and the median's ratio to the first command's.
"""
import json
import statistics
import subprocess
import sys
import time

rounds = int(sys.argv[1])
request = sys.argv[2].encode()
ids = json.loads(request)["ids"]
cmds = [a.split("=", 1) for a in sys.argv[3:]]
times = {name: [] for name, _ in cmds}
for _ in range(rounds):
    for name, cmd in cmds:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/bin/sh", "-c", "exec " + cmd], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = p.communicate(request)
        elapsed = (time.perf_counter() - t0) * 1000
        if p.returncode != 0:
            sys.exit(f"{name} exited {p.returncode}: {stderr.decode()[-500:]}")
        answer = json.loads(stdout)
        missing = [i for i in ids if i not in answer.get("values", {})]
        if missing:
            sys.exit(f"{name} did not resolve {missing}: {answer.get('errors')}")
        times[name].append(elapsed)
ref = statistics.median(times[cmds[0][0]])
for name, _ in cmds:
    t = sorted(times[name])
    med = statistics.median(t)
    p90 = t[int(len(t) * 0.9) - 1]
    print(f"{name:<28} median {med:7.1f} ms  p90 {p90:7.1f} ms  min {t[0]:7.1f} ms  "
          f"({med / ref:.2f}x {cmds[0][0]})")
