#!/usr/bin/env python3
"""One line per sweep step of a `chat-bench` run, for the alternating A/B scripts (bench/ab.sh,
bench/ab-mariadb.sh):

    python3 bench/steps.py LABEL FILE

FILE holds the run's standard output (JSON lines; other lines are skipped). Each line gives the server's
CPU and context switches per message, the delivery p99, the CPU neither node nor tool used (`other`:
a database's, mostly), whether the step passed, and for acknowledged sends the ack p99, the resends and
the duplicates recipients saw.
"""
import json
import sys


def main():
    label, path = sys.argv[1:]
    for line in open(path):
        try:
            run = json.loads(line)
        except ValueError:
            continue
        for s in run.get("steps", []) if isinstance(run, dict) else []:
            ack = (f" ack_p99={s.get('ack_p99_ms')} resends={s.get('resends')} dups={s.get('duplicates')}"
                   if s.get("ack") else "")
            print(f"{label} rate={s.get('rate')} cpu_us={s.get('server_cpu_us_per_msg')} "
                  f"cs={s.get('ctx_switches_per_msg')} p99={s.get('p99_ms')} "
                  f"other_cpu_s={s.get('other_cpu_s')} pass={s.get('passed')}{ack}")


if __name__ == "__main__":
    main()
