#!/usr/bin/env bash
# The whole performance comparison in one command: our criterion suite
# (benches/calls.rs) pinned to CPU 0 for the 1-client rows and unpinned for
# the rest, then Python's multiprocessing managers on the same workloads
# (benches/python/bench_managers.py) in the same two conditions, then our
# calls/s and Python's side by side and the README's Markdown table.
#
#   benches/run.sh             # everything (about 5 minutes on 2 vCPUs)
#   benches/run.sh --quick     # shorter measurements, for a smoke test
#   benches/run.sh --no-python # ours only
#   benches/run.sh --report    # only re-print the tables of the last run
#   benches/run.sh --scale     # also the scale probes (benches/scale.rs, and
#                              # Python: benches/python/scale_managers.py):
#                              # 10,000 idle clients, 1,000 + 1,000 waiters,
#                              # disconnect churn with 100,000 objects alive
#
# Then benches/latency.rs, pinned and unpinned: one client's small call with
# busy-polling on and off beside the raw floor, with CPU time per call, and
# 4 client processes; printed as the README's latency table.
#
# Raw rows are kept in target/bench-results/{ours,python,latency}.tsv. Python is
# skipped, with a note, when python3 is not on the PATH; the pinned rows are
# skipped, with a note, when taskset is not.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 python=1 measure=1 scale=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-python) python=0 ;;
        --report) measure=0 ;;
        --scale) scale=1 ;;
        -h | --help)
            sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "run.sh: unknown option $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

out=target/bench-results
ours=$out/ours.tsv
py=$out/python.tsv
lat=$out/latency.tsv

if [[ $measure == 1 ]]; then
    mkdir -p "$out"
    rm -f "$ours" "$py" "$lat"
    crit=()
    pyargs=()
    if [[ $quick == 1 ]]; then
        crit=(--warm-up-time 0.1 --measurement-time 0.3)
        pyargs=(--quick)
    fi
    # Build first, so that pinning below does not pin the compiler.
    cargo bench --bench calls --no-run
    cargo bench --bench latency --no-run
    have_taskset=0
    if command -v taskset >/dev/null; then
        have_taskset=1
    fi

    if [[ $have_taskset == 1 ]]; then
        echo
        echo "== ours, 1 client, pinned to CPU 0 (taskset -c 0): client and manager alternate on one CPU"
        MANAGER_BENCH_TSV=$ours taskset -c 0 cargo bench --bench calls -- "${crit[@]}"
    else
        echo "taskset not found: skipping the pinned rows (install util-linux)"
    fi
    echo
    echo "== ours, unpinned: 1, 2 and 4 clients"
    MANAGER_BENCH_TSV=$ours cargo bench --bench calls -- "${crit[@]}"

    if [[ $have_taskset == 1 ]]; then
        echo
        echo "== latency, pinned to CPU 0: busy-polling on and off (benches/latency.rs)"
        MANAGER_BENCH_LATENCY_TSV=$lat taskset -c 0 cargo bench --bench latency
    fi
    echo
    echo "== latency, unpinned: busy-polling on and off, 1 and 4 clients (benches/latency.rs)"
    MANAGER_BENCH_LATENCY_TSV=$lat cargo bench --bench latency

    if [[ $python == 1 ]] && command -v python3 >/dev/null; then
        if [[ $have_taskset == 1 ]]; then
            echo
            echo "== Python, 1 client, pinned to CPU 0"
            taskset -c 0 python3 benches/python/bench_managers.py --tsv "$py" "${pyargs[@]}"
        fi
        echo
        echo "== Python, unpinned: 1, 2 and 4 clients"
        python3 benches/python/bench_managers.py --tsv "$py" "${pyargs[@]}"
    elif [[ $python == 1 ]]; then
        echo
        echo "python3 not found: skipping Python's managers"
    fi
fi

if [[ ! -s $ours ]]; then
    echo "run.sh: no results in $ours; run without --report first" >&2
    exit 1
fi
[[ -f $py ]] || : >"$py"

# Both tables from the rows: ours.tsv has condition, socket, op, label,
# calls/op, us/op (B/entry for memory), calls/s, floor us, ratio, target,
# verdict; python.tsv has condition, socket, op, what, calls/op, us/op,
# calls/s.
awk -F'\t' -v pyfile="$py" '
    function num(x, d) { return x == "-" ? "-" : sprintf("%." d "f", x) }
    function si(x) {
        if (x == "-" || x == "") return "-"
        if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
        if (x >= 1e3) return sprintf("%.1fk", x / 1e3)
        return sprintf("%.0f", x)
    }
    function cond_order(c) { return c == "pinned" ? 0 : 1 }
    FILENAME == pyfile { py[$1 SUBSEP $2 SUBSEP $3] = $6; pyrate[$1 SUBSEP $2 SUBSEP $3] = $7; next }
    $3 ~ /^floor_/ { next }
    # 1-client rows: pinned, plus the small call unpinned for contrast;
    # multi-client rows and memory: whichever run measured them.
    $1 == "unpinned" && $3 !~ /clients$/ && $3 != "get" && $3 != "dict_memory" { next }
    $1 == "pinned" && $3 == "dict_memory" { next }
    {
        k = $1 SUBSEP $2 SUBSEP $3
        n++
        c[n] = $1; s[n] = $2; op[n] = $3; label[n] = $4; us[n] = $6; rate[n] = $7
        fl[n] = $8; ratio[n] = $9; target[n] = $10; verdict[n] = $11
        p[n] = (k in py) ? py[k] : "-"
        prate[n] = (k in pyrate) ? pyrate[k] : "-"
    }
    END {
        printf "\n== ours and Python side by side (us per operation; calls/s)\n"
        printf "%-8s %-4s %-42s %10s %9s %9s %7s %11s %9s %9s  %s\n", "cond", "sock", "operation", "ours us", "calls/s", "floor us", "ratio", "Python us", "calls/s", "speed-up", "target: verdict"
        for (i = 1; i <= n; i++) {
            mem = op[i] == "dict_memory"
            up = (p[i] == "-" || mem) ? "-" : sprintf("%.1fx", p[i] / us[i])
            if (mem && p[i] != "-") up = sprintf("%.2fx less", p[i] / us[i])
            tv = target[i] == "" ? "" : target[i] ": " verdict[i]
            printf "%-8s %-4s %-42s %10s %9s %9s %7s %11s %9s %9s  %s\n", c[i], s[i], label[i], \
                mem ? us[i] " B" : num(us[i], 2), si(rate[i]), num(fl[i], 2), \
                ratio[i] == "-" ? "-" : sprintf("%.2fx", ratio[i]), \
                mem ? (p[i] == "-" ? "-" : p[i] " B") : num(p[i], 2), si(prate[i]), up, tv
        }
        for (t = 1; t <= 2; t++) {
            sock = t == 1 ? "uds" : "tcp"
            printf "\n#### %s\n\n", sock == "uds" ? "Local socket (Unix domain socket)" : "TCP loopback"
            print "| operation | ours | floor | ratio | Python | speed-up | target |"
            print "| --- | --- | --- | --- | --- | --- | --- |"
            for (i = 1; i <= n; i++) {
                if (s[i] != sock) continue
                mem = op[i] == "dict_memory"
                what = label[i] ((op[i] ~ /clients$/ || mem) ? "" : ", 1 client " c[i])
                if (mem) {
                    ours_cell = sprintf("%.0f B/entry", us[i])
                    py_cell = p[i] == "-" ? "—" : sprintf("%.0f B/entry", p[i])
                    up = p[i] == "-" ? "—" : sprintf("%.2f× less memory", p[i] / us[i])
                } else {
                    ours_cell = sprintf("%.2f µs (%s/s)", us[i], si(rate[i]))
                    py_cell = p[i] == "-" ? "—" : sprintf("%.2f µs (%s/s)", p[i], si(prate[i]))
                    up = p[i] == "-" ? "—" : sprintf("%.1f×", p[i] / us[i])
                }
                floor_cell = fl[i] == "-" ? "—" : sprintf("%.2f µs", fl[i])
                ratio_cell = ratio[i] == "-" ? "—" : sprintf("%.2f×", ratio[i])
                if (op[i] ~ /clients$/ && fl[i] != "-") {
                    # Aggregate rows: calls/s, and their share of the floor calls/s.
                    floor_cell = sprintf("%.2f µs (%s/s)", fl[i], si(1e6 / fl[i]))
                    ratio_cell = sprintf("%.2f× its calls/s", ratio[i])
                }
                tv = target[i] == "" ? "—" : target[i] " " (verdict[i] == "met" ? "✓" : verdict[i] == "MISSED" ? "✗" : "(n/a)")
                gsub(/<=/, "≤ ", tv); gsub(/>=/, "≥ ", tv)
                gsub(/\|/, "\\|", what); gsub(/</, "\\&lt;", what)
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", what, ours_cell, floor_cell, ratio_cell, py_cell, up, tv
            }
        }
        printf "\nReproduce: benches/run.sh (ours: cargo bench --bench calls, pinned with taskset -c 0 for 1 client)\n"
    }
' "$py" "$ours"

# The latency table: latency.tsv has condition, socket, op, label, clients,
# us/call, calls/s, CPU us/call, fastest and slowest run.
if [[ -s $lat ]]; then
    awk -F'\t' -v pyfile="$py" '
        FILENAME == pyfile { if ($3 == "get") py[$1 SUBSEP $2] = $6; next }
        { n++; for (i = 1; i <= 10; i++) f[n, i] = $i }
        END {
            printf "\n#### Latency where users run it (benches/latency.rs; median of runs on fresh processes)\n\n"
            print "| condition | socket | operation | µs per call | calls/s | CPU µs per call (client + server) | runs (fastest–slowest) | vs floor | Python |"
            print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            for (i = 1; i <= n; i++) {
                if (f[i, 3] == "floor") floor[f[i, 1], f[i, 2]] = f[i, 6]
            }
            for (i = 1; i <= n; i++) {
                k = f[i, 1] SUBSEP f[i, 2]
                vs = "—"
                if (f[i, 5] == 1 && f[i, 3] != "floor" && (k in floor))
                    vs = sprintf("%.2f× its time", f[i, 6] / floor[k])
                p = (f[i, 3] == "get" && (k in py)) ? sprintf("%.2f µs", py[k]) : "—"
                printf "| %s | %s | %s | %.2f | %.0f | %.2f | %.2f–%.2f | %s | %s |\n", \
                    f[i, 1], f[i, 2], f[i, 4], f[i, 6], f[i, 7], f[i, 8], f[i, 9], f[i, 10], vs, p
            }
        }
    ' "$py" "$lat"
fi

if [[ $scale == 1 ]]; then
    echo
    echo "== scale probe: idle clients and blocked waiters (benches/scale.rs)"
    cargo bench --bench scale
    if [[ $python == 1 ]] && command -v python3 >/dev/null; then
        echo
        echo "== Python's SyncManager on the same probe (benches/python/scale_managers.py)"
        mkdir -p "$out"
        rm -f "$out/python-scale.tsv"
        python3 benches/python/scale_managers.py --tsv "$out/python-scale.tsv"
    elif [[ $python == 1 ]]; then
        echo
        echo "python3 not found: skipping Python's scale probe"
    fi
fi
