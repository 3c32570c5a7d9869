# Short targets; logic that grows lives in scripts/.
#
#   make            build (release), start PostgreSQL + schema + consumer + propagator, stream logs;
#                   Ctrl-C stops everything (propagator, consumer, database). "running" only once
#                   the consumer's own socket answers /readyz on CONSUMER_PORT; with the consumer's
#                   TLS on in .env, over HTTPS with PROPAGATOR_TLS_CA_FILE, the propagator too
#   make stop       stop a running `make` from another terminal (or what a killed one left); names
#                   what it cannot stop, with the command that will
#   make status     what runs, and the stored events (count by type, the newest rows) whenever
#                   the database answers, make running or not
#   make psql       psql on make's database, started for the session when it is down;
#                   make psql SQL='select count(*) from events' runs one command and exits
#   make clean-db   delete the local database (.local/pg, or the container's volume)
#   make dist       static binaries (musl) in dist/<target>/: x86_64 and aarch64 by default, a
#                   default target whose toolchain is missing is skipped and said (exit 0);
#                   DIST_TARGETS='...' names them, and then each must build (else exit 1)
#   make smoke      the `make` flow end to end on a throwaway state dir and ports
#   make conformance  the live consumer against openapi.yaml, fuzzed by schemathesis (pip, in
#                   target/conformance-venv); the table must hold exactly the acknowledged events
#   make check-deploy  lint scripts, systemd units, Dockerfile and compose files (no engine needed)
#   make deb        the Debian package target/deb/event-system_<version>_<arch>.deb (scripts/deb.sh)
#   make deb-check  check it: files and modes, man pages against --help, lintian, and as root
#                   dpkg -i, verify, dpkg --purge on this machine (scripts/deb-check.sh)
#   make test       the test suite, without soak sizes or wall-clock bounds (those are make soak)
#   make soak       the soak binaries: hostile clients by the thousand, wall-clock bounds
#   make bench      throughput vs PostgreSQL's own INSERT ceiling, written to bench/RESULTS.md
#   make bench-compare  two consumer binaries interleaved, round by round (COMPARE_A=path
#                   COMPARE_B=path; scripts/bench-compare.sh lists the settings), written to
#                   bench/notes/compare-<date>.md
#   make chaos      kill/stop consumers and restart PostgreSQL under load; check every event is
#                   stored exactly once (CHAOS_SECONDS=60 by default; CI runs 15)
#   make chaos-spool  the same with propagator spools: a 70 s outage of both consumers,
#                   propagators SIGKILLed and restarted; every key stored once or still spooled
#   make bench-spool  the propagator's throughput without and with its spool, alone
#   make ha         3 consumers behind HAProxy on a primary + synchronous standby; kill, drain, stop
#                   consumers and fail the primary over under load; check exactly-once on the new
#                   primary (HA_SECONDS=60 by default; CI runs 30)
#   make fuzz       run each cargo-fuzz target for FUZZ_SECONDS (default 60; needs nightly)
#
# The database listens on DB_PORT, default 5433 (see scripts/lib.sh); .env is created from
# .env.template when missing. EVENTS_DB=local|docker picks the database, EVENTS_STATE_DIR moves .local.
# RETENTION_DAYS (environment or .env) reaches the consumer's config.yaml; unset, every event is kept.
.DEFAULT_GOAL := run
.PHONY: run build stop status psql clean-db dist smoke conformance check-deploy test soak bench

run: build
	exec scripts/run-suite.sh run

build:
	cargo build --release -p event_consumer -p event_propagator

stop:
	scripts/run-suite.sh stop

status:
	scripts/status.sh

# SQL comes from make's command line through the environment (no quoting here to break).
psql:
	scripts/psql.sh

clean-db:
	scripts/run-suite.sh clean-db

dist:
	scripts/dist.sh

smoke:
	scripts/smoke.sh

conformance:
	scripts/conformance.sh

check-deploy:
	scripts/check-deploy.sh

test:
	scripts/test.sh

soak:
	scripts/soak.sh

bench:
	scripts/bench.sh

.PHONY: bench-compare
bench-compare:
	scripts/bench-compare.sh

.PHONY: bench-spool
bench-spool:
	scripts/bench-spool.sh

.PHONY: chaos-spool
chaos-spool: build
	CHAOS_SPOOL=1 CHAOS_SECONDS=$${CHAOS_SECONDS:-130} scripts/chaos.sh

.PHONY: deb deb-check
deb:
	scripts/deb.sh

deb-check:
	scripts/deb-check.sh

.PHONY: chaos fuzz ha
chaos: build
	scripts/chaos.sh

ha: build
	scripts/ha.sh

FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)
