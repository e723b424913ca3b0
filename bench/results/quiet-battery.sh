cd "$(dirname "$0")/../.."  # the repository root
P=.venv/bin/python
run() { echo "=== $(date +%T) $*"; timeout 900 "$@" 2>&1 | tail -40; echo "--- load $(cut -d' ' -f1-3 /proc/loadavg)"; }
run $P bench/startup.py --runs 5
run $P bench/run.py sequential --subs 1000 --sets 200 --duration 8 --store file file-normal memory
run $P bench/run.py latency --subs 1000 --rate 20 --duration 8
run $P bench/run.py ceiling --subs 1000
run $P bench/run.py join-storm --clients 5000 --items 100 --store file
run $P bench/reconnect_storm.py
run $P bench/tokens.py run
run $P bench/run.py idle --conns 10000
run $P bench/run.py cross-instance --subs 1000 --rate 20
