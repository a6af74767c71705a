#!/usr/bin/env bash
# Instructions per call of the client and of the manager, counted with
# callgrind rather than timed (benches/instructions.rs): each workload runs
# twice, with two call counts, and the difference of the instructions
# counted is divided by the difference of the calls, so start-up and
# warm-up cancel out. Deterministic, so a change to the per-call path can be
# compared before and after on a noisy machine; about a minute per workload.
#
#   benches/instructions.sh                 # every workload
#   benches/instructions.sh get deferred64  # some of them
#
# Needs valgrind (apt-get install valgrind); without it, says so and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    echo "instructions.sh: valgrind not found (apt-get install valgrind); nothing counted"
    exit 0
fi
workloads=("$@")
if [[ ${#workloads[@]} == 0 ]]; then
    workloads=(get incr deferred64 async1000)
fi

bin=$(cargo bench --bench instructions --no-run 2>&1 |
    grep -o 'target/[^ )]*/deps/instructions-[0-9a-f]*' | head -n 1)
if [[ -z $bin || ! -x $bin ]]; then
    echo "instructions.sh: cannot find the built bench binary" >&2
    exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions counted in the profiles of run $1: client and manager.
totals() {
    local run=$1 client_pid=$2 client=0 manager=0 f pid n
    for f in "$out/$run".*; do
        pid=${f##*.}
        n=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
        if [[ $pid == "$client_pid" ]]; then client=$((client + n)); else manager=$((manager + n)); fi
    done
    echo "$client $manager"
}

printf "%-11s %12s %12s   (instructions per call)\n" workload client manager
for w in "${workloads[@]}"; do
    small=12800 big=38400
    if [[ $w == get || $w == incr ]]; then small=4000 big=12000; fi
    declare -A c m
    for n in $small $big; do
        pid=$(valgrind --tool=callgrind --trace-children=yes \
            --callgrind-out-file="$out/$w-$n.%p" "$bin" "$w" "$n" 2>/dev/null |
            awk '/^client pid/ { print $3 }')
        read -r c[$n] m[$n] < <(totals "$w-$n" "$pid")
    done
    calls=$((big - small))
    printf "%-11s %12d %12d\n" "$w" $(((c[$big] - c[$small]) / calls)) $(((m[$big] - m[$small]) / calls))
    unset c m
done
