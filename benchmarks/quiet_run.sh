#!/usr/bin/env bash
# The lead's quiet run: every timed benchmark docs/benchmarks.md quotes, in one script, run ALONE
# on the machine (nothing else: no tests, no builds, no other benchmark). Each step's output goes
# to $OUT/<step>.log with `uptime` before it, so a reader can tell a quiet step from a loaded one.
#
#   bash benchmarks/quiet_run.sh                 # every step, in order (~45-60 min on 2 cores)
#   STEPS="pg ingest" bash benchmarks/quiet_run.sh   # only the named steps
#
# Environment:
#   PY         the interpreter with the project installed (default: .venv/bin/python)
#   OUT        where the logs go (default: /tmp/quiet-run)
#   PGB        a writable copy of ../shared/pg-baseline (default: /tmp/pgb, copied if missing)
#   STORE100K  a bench_store_1m store of 100k customers (default: /tmp/bench100k, built if missing)
#   STORE1M    a bench_store_1m store of 1M customers (default: /tmp/bench1m; the rss1m step is
#              skipped when it is missing: building it takes ~30 min, see bench_store_1m.py)
#
# Engineers: add a new workload as a step here (a function named step_<name> and its name in
# ALL_STEPS), with a comment naming the docs/benchmarks.md section that explains its figure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-/tmp/quiet-run}"
PGB="${PGB:-/tmp/pgb}"
STORE100K="${STORE100K:-/tmp/bench100k}"
STORE1M="${STORE1M:-/tmp/bench1m}"
HERE="$(pwd)"
mkdir -p "$OUT"
export SHOPKEEPER_SEGMENT_TICK_SECONDS=0   # the segment scheduler off for every hub run (§49)
# the workload is stamped "now" by default since §72; SHOPKEEPER_BENCH_T0=legacy gives the 2023 start of §71 and before

ALL_STEPS="compile pg ingest processors procabba floor shape single keys apply pg email sms web cdnow cdnowab import reeval scaleout scaleoutprobe scaleoutcold store100k decide read1m rss1m read10m khub backup1m"

run() {  # run NAME CMD...: one benchmark command, its output in $OUT/NAME.log
    local name="$1"; shift
    {
        echo "== $name: $*"
        echo "== $(date -u +%H:%M:%S) $(uptime)"
    } | tee -a "$OUT/$name.log"
    "$@" >>"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $(date -u +%H:%M:%S) rc=$rc" | tee -a "$OUT/$name.log"
}

step_compile() { "$PY" -m compileall -q core adapters; }

step_pg() {  # PostgreSQL mode c, the ingest comparator (../shared/pg-baseline), before and after the hub
    if [ ! -d "$PGB" ]; then cp -r "$HERE/../shared/pg-baseline" "$PGB" && chmod -R u+w "$PGB"; fi
    (cd "$PGB" && QUICK=1 BENCH_SECONDS=10 run pg bash ./run.sh)
}

step_ingest() {  # §49/§71: durable ingest over gRPC, ABBA bare/plugins; read "hub CPU by thread"
    local b=(--skip-latency --events 20000 --streams 2)
    run ingest "$PY" benchmarks/bench_hub.py "${b[@]}"
    run ingest "$PY" benchmarks/bench_hub.py "${b[@]}" --plugins
    run ingest "$PY" benchmarks/bench_hub.py "${b[@]}" --plugins
    run ingest "$PY" benchmarks/bench_hub.py "${b[@]}"
    run ingest "$PY" benchmarks/bench_hub.py --skip-latency --events 80000 --streams 2 --plugins
}

step_processors() {  # §45/§67/§72: the processors' share in process; calls are deterministic (compare with §72)
    run processors "$PY" benchmarks/probe_processors.py --repeat 3 --variants bare,all,split,bare-split
    run processors "$PY" benchmarks/probe_processors.py --repeat 1 --variants bare-calls,calls
}

step_procabba() {  # §72: issue 10 item 4 (processors <= +30%) as one figure: the median of 6 plugins/bare
    # pairs of 40k-event hub runs (ABBA), hub CPU per event and the writer's; read the last line
    run procabba "$PY" benchmarks/bench_hub.py --skip-latency --events 40000 --streams 2 --processors-abba 3 \
        --json "$OUT/procabba.json"
}

step_floor() {  # §49/§68: the writer against the bare-ZODB floor of the same shape, cold and warm
    run floor "$PY" benchmarks/bench_ingest.py --only grouped --grouped 20000 --floor
    run floor "$PY" benchmarks/bench_ingest.py --only grouped --grouped 20000 --warm 20000 --floor
}

step_shape() {  # §77: history/key-log entry formats; the writer against the floor at 20k, warm and cold
    run shape "$PY" benchmarks/probe_history_memory.py
    run shape "$PY" benchmarks/bench_ingest.py --customers 20000 --only grouped --grouped 6000 --warm 20000 --floor
    run shape "$PY" benchmarks/bench_ingest.py --customers 20000 --only grouped --grouped 6000 --floor
}

step_single() {  # one event per transaction against the bare fsync'd loop
    run single "$PY" benchmarks/bench_ingest.py --single 2000 --only single
    run single "$PY" benchmarks/probe_single.py --customers 100000 --events 2000  # §78: through the writer, and a 1-record bare loop
    run single "$PY" benchmarks/probe_single.py --customers 100000 --events 2000 --warm-folder  # §96: the same, folder buckets cached first
    run single "$PY" benchmarks/probe_single.py --customers 100000 --events 2000 --variants bare,bare3,ingestor,writer --phases  # §104: CPU by ZODB step
    run single "$PY" benchmarks/probe_single.py --customers 20000 --events 20000 --variants handoff,handoff-metrics  # §104: the writer's own cost
}

step_keys() {  # §98: exactly-once bookkeeping per event (generation 13's fingerprints), by key-log size; CPU probe
    run keys "$PY" benchmarks/probe_keys.py
}

step_apply() {  # §84, §94, §96: the apply loop's calls per event, warm and cold (deterministic: compare with §94's table),
    # and a lone event's calls, records and bytes per commit through the writer and the Ingestor (against the bare loop)
    run apply "$PY" benchmarks/probe_processors.py --repeat 1 --warm 20000 --variants bare-calls,calls
    run apply "$PY" benchmarks/probe_processors.py --repeat 1 --variants bare-calls,calls
    run apply "$PY" benchmarks/probe_single.py --customers 20000 --events 1000 --calls
    run apply "$PY" benchmarks/probe_single.py --customers 20000 --events 1000 --calls --warm-folder  # §96: cold folder buckets' share
    run apply "$PY" benchmarks/probe_single.py --customers 20000 --events 1000 --calls --variants bare3,handoff,handoff-metrics  # §104
}

step_email() {  # §70/§74/§86/§88/§97: raw smtplib, in-hub, remote; CPU per message by process and thread; the hub
    # process as shopkeeper serve tunes it (§88), and the in-hub run again under CPython's defaults (how §87 measured it)
    run email "$PY" benchmarks/bench_email.py --messages 3000
    run email "$PY" benchmarks/bench_email.py --messages 3000 --modes raw,in-process --untuned
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote   # §86: sustained, the issue's 2k/s
    # §105 (email): the sink advertises PIPELINING by default; alternated with --sink-plain (one command per round trip)
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote --sink-plain
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote --sink-plain
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote --adapter-connections 32  # more SMTP connections
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote --switch-interval 0.001  # §97: adapter GIL A/B
    run email "$PY" benchmarks/bench_email.py --messages 9000 --modes raw,remote --adapters 2
    run email "$PY" benchmarks/bench_email.py --messages 3000 --modes raw,in-process
    run email "$PY" benchmarks/probe_outbound.py --messages 3000 --mode remote
    run email "$PY" benchmarks/probe_outbound.py --messages 3000
    run email "$PY" benchmarks/probe_outbound.py --messages 3000 --mode writer   # §97: claim, sent: commits / applying
}

step_sms() {  # §65, §76, §85: raw, raw-dlr, in-hub, remote through Kannel's fake SMSC (the hub process as
    # shopkeeper serve tunes it, §85); the in-hub run again under CPython's defaults (how §80 measured it);
    # two remote adapter processes
    run sms "$PY" benchmarks/bench_sms.py --messages 3000
    run sms "$PY" benchmarks/bench_sms.py --messages 3000 --modes in-process --untuned
    run sms "$PY" benchmarks/bench_sms.py --messages 3000 --modes in-process
    run sms "$PY" benchmarks/bench_sms.py --messages 3000 --modes remote --adapters 2
}

step_web() {  # §92: issue 10's web collector (>= 5k events/s acknowledged after commit), built-in plugins on, the
    # hub as shopkeeper serve tunes it: read "events acked (N events/s)" against 5,000 and the "CPU per event" line
    # (total <= ~400 us on 2 cores; writer / HTTP thread / load generator); new visitors, returning visitors, twice
    # the connections (is the run bound by what is in flight?); then the HTTP thread's calls per event (cProfile)
    run web "$PY" benchmarks/bench_web.py --seconds 20
    run web "$PY" benchmarks/bench_web.py --seconds 20 --visitors 500
    run web "$PY" benchmarks/bench_web.py --seconds 20 --connections 64
    run web "$PY" benchmarks/bench_web.py --seconds 10 --profile "$OUT/web-http-calls.txt"
}

step_cdnow() {  # §106, §102, §90, §83, §73 (§66/§58): raw CDNOW file -> scores CSV in the walk-through's three commands, each with its phases; three runs
    for _ in 1 2 3; do run cdnow "$PY" benchmarks/bench_cdnow.py; done
}

step_cdnowab() {  # §106: the same, alternated with the code at $CDNOW_BASE (default f5669c0, the thirteenth session's start), 3 pairs
    local base="${CDNOW_BASE:-f5669c0}" tree=/tmp/cdnow-ab-base pp=/tmp/cdnow-ab-path
    rm -rf "$pp"; git worktree remove --force "$tree" 2>/dev/null
    git worktree add --detach "$tree" "$base" >/dev/null && mkdir -p "$pp" &&
        ln -sfn "$tree/core" "$pp/shopkeeper" && ln -sfn "$tree/adapters" "$tree/core/adapters" &&
        "$PY" -m compileall -q "$tree/core" "$tree/adapters" >/dev/null
    for _ in 1 2 3; do
        PYTHONPATH="$pp" run cdnowab-base "$PY" benchmarks/bench_cdnow.py
        run cdnowab-head "$PY" benchmarks/bench_cdnow.py
    done
    git worktree remove --force "$tree"; rm -rf "$pp"
}

step_import() {  # issue 10's import target against the bare ZODB loop; §75: CPU per CDNOW row in process
    run import "$PY" benchmarks/bench_import.py --rows 200000 --customers 100000
    run importprobe "$PY" benchmarks/probe_import.py cdnow --rows 0
}

step_reeval() {  # §81, §93: issue 10's "full re-evaluation (50 segments) and Parquet export <= 60 us per customer",
    # 100k customers x 10 interactions (a ~450 MB seed store under $OUT, built once by the first command, ~1 min,
    # deleted by the last): read "us CPU per customer" and "us wall per customer" of each line — the first run
    # (every customer enters ~9 segments: all written), the scheduler's run (all 50 again, nothing changes), the
    # scheduler's run 45 days on (§93: ~2 of 50 change per customer, each changed card patched), the export
    local d="$OUT/reeval-store"
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d"
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d" --again
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d" --again --later 45
    # §100: the same-run baselines of the peeked records — every customer loaded, as before (--no-peek)
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d" --again --no-peek
    # §108: the same-run baselines of the memberships rows (generation 16) — memberships kept in the records, as
    # before (--in-records): the first run and 45 days on, each to read against the lines above
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d" --in-records
    run reeval "$PY" benchmarks/probe_reeval.py reeval --customers 100000 --dir "$d" --again --later 45 --in-records
    run reeval "$PY" benchmarks/probe_reeval.py export --customers 100000 --dir "$d" --no-peek
    run reeval "$PY" benchmarks/probe_reeval.py export --customers 100000 --dir "$d" --drop-seed
}

step_scaleout() {  # §64/§71: 2 hubs against 1 on the same PostgreSQL, routed by customer
    # 1 hub on FileStorage first (the issue's "2 hubs >= 0.5x one hub on FileStorage"), then 1 and 2 on
    # PostgreSQL: read the lines "2 hubs / 1 hub on PostgreSQL" and "2 hubs on PostgreSQL / 1 hub on FileStorage"
    # 150,000 events (§80, §87: the 50k runs last 6-7 s each, dominated by warm-up; the figure of record is this one)
    run scaleout timeout 1800 "$PY" benchmarks/bench_scaleout.py --hubs 1,2 --route customer --warm --events 150000
}

step_scaleoutprobe() {  # §89: the same 1 and 2 hubs under the probe, for the counts (not the ratio: the probe
    # slows the hubs): applied_per_event, reapplied_per_conflict, writer_commits, thread_cpu_us_per_event,
    # pg_rows_written_per_writer_commit, pg_commits/rollbacks_per_1k_events, conflicts_by_class, and (§101)
    # conflicts_where: the tree and node of each conflict (expect {} with the lane trees)
    run scaleoutprobe timeout 2400 "$PY" benchmarks/bench_scaleout.py --no-file --hubs 1,2 --route customer --warm \
        --events 150000 --probe "$OUT/scaleout-probe"
}

step_scaleoutcold() {  # §110: a cold run (no --warm: the run creates its customers, ~1 in 5 events), routed,
    # under the probe: conflicts_where (generation 17: nothing on `customers` or `audience['cards']`; what is left
    # is on `identities`), applied_per_event, created_per_event; then the same without the probe for the ratio
    run scaleoutcold timeout 2400 "$PY" benchmarks/bench_scaleout.py --no-file --hubs 1,2 --route customer \
        --events 150000 --probe "$OUT/scaleout-cold-probe"
    run scaleoutcold timeout 1800 "$PY" benchmarks/bench_scaleout.py --no-file --hubs 1,2 --route customer --events 150000
}

step_khub() {  # §79: the K-hub simulation, K = 1, 2, 4, 8 with 0.25 ms each way (a model check, not a
    # throughput figure on 2 cores): read the "curve K=" lines, efficiency_vs_1, conflict_retries_pct
    run khub timeout 2400 "$PY" benchmarks/bench_scaleout.py --no-file --hubs 1,2,4,8 --route customer --warm \
        --events 50000 --delay-ms 0.25 --probe "$OUT/khub-probe" --stall-seconds 300
}

step_backup1m() {  # §79: the 1M backup + restore round trip, FileStorage and PostgreSQL, verified customer by
    # customer (a correctness run: last, nice; ~1 h alone, see §79's estimate)
    if [ ! -f "$STORE1M/Data.fs" ]; then echo "backup1m: no $STORE1M/Data.fs, skipped"; return; fi
    run backup1m nice "$PY" benchmarks/bench_backup.py --store "$STORE1M/Data.fs" --pg --workers 2 \
        --progress 120 --json "$OUT/backup1m.json"
}

step_store100k() {  # the 100k store the Decide A/B reads (built once, kept)
    if [ ! -f "$STORE100K/Data.fs" ]; then
        mkdir -p "$STORE100K"
        run store100k "$PY" benchmarks/bench_store_1m.py --customers 100000 --dir "$STORE100K" --keep
    else
        run store100k "$PY" benchmarks/bench_store_1m.py --measure-only "$STORE100K/Data.fs"
    fi
}

step_decide() {  # §69: Decide p99 with offer recording on / off, a fresh store copy per phase
    run decide "$PY" benchmarks/bench_hub.py --skip-ingest --plugins --latency-store "$STORE100K/Data.fs" \
        --latency-customers 100000 --rate 80 --seconds 20 --warmup 5 --procs 3 --decide-abba 2 \
        --json "$OUT/abba80.json"
}

step_read1m() {  # §82 (issue 17's read target at 1M): GetCustomer at 500/s, no plugins, on FileStorage (the 1M
    # store used as is) and on a private PostgreSQL holding its current records (copied in ~3-5 min, removed
    # after): read the GetCustomer line's p99 (target <= 5 ms) and its "hub gc" line (gen2 count 0, longest
    # gen1 CPU a few ms), and "hub RSS ... at end"; the lead's 07:28 run had p99 178 ms, a 245 ms gen2 pass
    if [ ! -f "$STORE1M/Data.fs" ]; then echo "read1m: no $STORE1M/Data.fs, skipped"; return; fi
    # §99: the Data.fs is read into the page cache first (bench_hub's default, --warm-file); the --cold-file run
    # drops it from the cache first: read its "disk KB/request" and p99 against the warm run's (the disk's share)
    run read1m "$PY" benchmarks/bench_hub.py --skip-ingest --latency-uri "file://$STORE1M/Data.fs" \
        --latency-customers 1000000 --rate 500 --seconds 20 --json "$OUT/read1m-file.json"
    run read1m "$PY" benchmarks/bench_hub.py --skip-ingest --latency-uri "file://$STORE1M/Data.fs" \
        --latency-customers 1000000 --rate 500 --seconds 20 --cold-file --json "$OUT/read1m-file-cold.json"
    run read1m "$PY" benchmarks/bench_hub.py --skip-ingest --latency-store "$STORE1M/Data.fs" --latency-pg \
        --latency-customers 1000000 --rate 500 --seconds 20 --json "$OUT/read1m-pg.json"
}

step_rss1m() {  # §71: a serving hub's RSS at 1M with its writer busy (not a timed figure)
    if [ ! -f "$STORE1M/Data.fs" ]; then echo "rss1m: no $STORE1M/Data.fs, skipped"; return; fi
    run rss1m "$PY" benchmarks/probe_hub_rss.py --store "$STORE1M/Data.fs" --customers 1000000 \
        --events 200000 --read-rate 100 --every 30 --json "$OUT/rss1m.json"
}

step_read10m() {  # §91 (issue 17's read targets at 10M on PostgreSQL): GetCustomer at 250 and 500 req/s on the store
    # as built, with the read pool's affinity and without (the A/B), then the hub's RSS with the writer busy (it writes
    # 300k events into the store: run it last). Read the GetCustomer line's p99 (<= 5 ms) and "server CPU", and
    # "hub RSS ... at end"; for the RSS probe the last and peak RSS (<= 2 GB). The cluster is started and stopped here.
    local pgdir="${PG10M:-/tmp/bench10m-pg}" uri="postgresql://postgres@127.0.0.1:55432/b10m"
    if [ ! -d "$pgdir/data" ]; then echo "read10m: no $pgdir, skipped"; return; fi
    "$PY" -c "from pathlib import Path; from shopkeeper.servers import PrivatePostgres as P; P(Path('$pgdir'), port=55432).start()"
    local b=(--skip-ingest --latency-uri "$uri" --latency-customers 10000000 --seconds 60)
    run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 250 --json "$OUT/read10m-250.json"
    run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 500 --json "$OUT/read10m-500.json"
    SHOPKEEPER_BENCH_READ_AFFINITY=0 run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 500 \
        --json "$OUT/read10m-500-noaffinity.json"
    # §107: the hub now warms its index's interior nodes at start (limits.read_warm_index): the first line is the hub
    # without (§103's); then a read reuses its connection's snapshot while nothing changed (limits.read_poll_interval:
    # no BEGIN, poll and ROLLBACK per read); read "server CPU" and p99 against the lines above. Then CPU and loads
    # per read by part (probe_coldread, in process): polling, not polling, warmed, and by id instead of by identity
    SHOPKEEPER_BENCH_READ_WARM_INDEX=0 run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 250 \
        --json "$OUT/read10m-250-nowarm.json"
    SHOPKEEPER_BENCH_READ_POLL_INTERVAL=1 run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 250 \
        --json "$OUT/read10m-250-poll1.json"
    SHOPKEEPER_BENCH_READ_POLL_INTERVAL=1 run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 500 \
        --json "$OUT/read10m-500-poll1.json"
    local c=(--uri "$uri" --customers 10000000 --read-cache-objects 10000)
    run read10m "$PY" benchmarks/probe_coldread.py "${c[@]}"
    run read10m "$PY" benchmarks/probe_coldread.py "${c[@]}" --poll-interval 1
    run read10m "$PY" benchmarks/probe_coldread.py "${c[@]}" --poll-interval 1 --warm-index
    run read10m "$PY" benchmarks/probe_coldread.py "${c[@]}" --poll-interval 1 --warm-index --by id
    # §99: a seed no run has written (7, 9-14, 16 and 42 are partly or wholly in the store), §95's cache bounds, and
    # --census: each line also says what the memory is made of (ZODB caches by role, RelStorage, glibc, types)
    run read10m "$PY" benchmarks/probe_hub_rss.py --uri "$uri" --customers 10000000 --events 300000 \
        --read-rate 100 --every 60 --seed 15 --read-cache-objects 5000 --cache-objects 20000 --census \
        --json "$OUT/rss10m.json"
    run read10m "$PY" benchmarks/bench_hub.py "${b[@]}" --rate 500 --seconds 30 --json "$OUT/read10m-500-after.json"
    "$PY" -c "from pathlib import Path; from shopkeeper.servers import PrivatePostgres as P; P(Path('$pgdir'), port=55432).stop()"
}

for s in ${STEPS:-$ALL_STEPS}; do
    "step_$s"
done
echo "logs in $OUT"
