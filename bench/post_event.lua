-- wrk script for scripts/bench.sh: POST /event with varied valid events over keep-alive
-- connections, each with a unique Idempotency-Key.
--
--   wrk -t2 -c64 -d12s --latency -s bench/post_event.lua http://127.0.0.1:PORT -- 10 RUN_ID
--
-- Arguments after `--`: for how many seconds to send events (less than -d), and a run id that
-- keeps the keys of one run apart from those of every other run against the same table (a
-- repeated key is answered 200 without a new row, which would break the rows == 2xx check).
--
-- Why the script stops sending before wrk's -d: when -d expires, wrk drops the requests in
-- flight, which the server may already have stored, so rows and counted answers would differ
-- by up to the number of connections. Here every connection stops sending after the given
-- seconds (`delay` holds it back), so when -d expires (2 s later in bench.sh) every event sent
-- has been answered and counted. No `response` function on purpose: with one, wrk copies every
-- response's headers and body into Lua, which costs it ~15 % of the requests it can send on a
-- 2-core machine; its own counters (completed requests, non-2xx/3xx answers) are exact.
-- The last line `done` prints is what bench.sh parses.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- Shapes of events.json; %d makes every payload different. Bodies are JSON with the payload
-- as a JSON string (inner quotes escaped once for JSON, once for Lua).
local templates = {
    '{"event_type":"user.login","event_payload":"{\\"user_id\\": %d, \\"method\\": \\"password\\", \\"ip\\": \\"10.0.4.17\\"}"}',
    '{"event_type":"user.logout","event_payload":"{\\"user_id\\": %d, \\"session_seconds\\": 1834}"}',
    '{"event_type":"order.created","event_payload":"{\\"order_id\\": \\"A-%d\\", \\"items\\": 3, \\"total_eur\\": 59.90}"}',
    '{"event_type":"order.shipped","event_payload":"{\\"order_id\\": \\"A-%d\\", \\"carrier\\": \\"DHL\\", \\"tracking\\": \\"JD014600006281\\"}"}',
    '{"event_type":"payment.failed","event_payload":"{\\"order_id\\": \\"A-%d\\", \\"reason\\": \\"card_declined\\", \\"attempt\\": 2}"}',
    '{"event_type":"sensor.temperature","event_payload":"{\\"sensor\\": \\"greenhouse-%d\\", \\"celsius\\": 23.7}"}',
    '{"event_type":"disk.usage.high","event_payload":"/var at 91%% on edge-node-%d"}',
    '{"event_type":"service.restarted","event_payload":"nginx restarted by watchdog after %d failed health checks"}',
    '{"event_type":"alert.cleared","event_payload":"Temp\\u00e9rature normale \\u2014 capteur serre-%d \\u2713"}',
    '{"event_type":"heartbeat","event_payload":"%d"}',
}

local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("thread_id", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

function init(args)
    event_seconds = tonumber(args[1]) or 10
    run_id = args[2] or tostring(os.time())
    math.randomseed(os.time() * 1000 + thread_id)
    sent = 0 -- events sent by this thread
    first_sent = nil
    cutoff = nil
    -- wrk 4 calls request() once on the first thread before the run, only to check the
    -- request; that one is never sent, so it must not count.
    dry_run_pending = thread_id == 0
    -- The request written out in one format string (cheaper for wrk than wrk.format and a
    -- headers table). The key: a random prefix spreads the keys over the unique index like
    -- UUIDs do (pgbench inserts gen_random_uuid() keys); the suffix makes them unique.
    local host = wrk.headers["Host"] or (wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host)
    request_format = "POST /event HTTP/1.1\r\nHost: " .. host ..
        "\r\nContent-Type: application/json\r\nIdempotency-Key: %08x%08x-" ..
        run_id:gsub("%%", "%%%%") .. "-" .. thread_id .. "-%d\r\nContent-Length: %d\r\n\r\n%s"
end

-- Past the cutoff a connection waits (longer than the run lasts) instead of sending.
function delay()
    if cutoff ~= nil and now() >= cutoff then
        return 600000
    end
    return 0
end

function request()
    if dry_run_pending then
        dry_run_pending = false
        return string.format(request_format, 0, 0, 0, 2, "{}")
    end
    if cutoff == nil then
        first_sent = now()
        cutoff = first_sent + event_seconds
    end
    sent = sent + 1
    local body = string.format(templates[sent % #templates + 1], sent)
    return string.format(request_format, math.random(0, 0x7fffffff),
        math.random(0, 0x7fffffff), sent, #body, body)
end

function done(summary, latency, requests)
    local sent_total = 0
    local first, last = nil, nil
    for _, thread in ipairs(threads) do
        sent_total = sent_total + thread:get("sent")
        local f, c = thread:get("first_sent"), thread:get("cutoff")
        if f and (first == nil or f < first) then first = f end
        if c and (last == nil or c > last) then last = c end
    end
    local errors = summary.errors
    -- wrk counts an answer with a status above 399 as a status error; the consumer sends no 3xx.
    local not_2xx = errors.status
    io.write(string.format(
        "BENCH sent=%d answered=%d ok_2xx=%d not_2xx=%d window_s=%.3f " ..
        "p50_us=%d p99_us=%d max_us=%d socket_errors=%d\n",
        sent_total, summary.requests, summary.requests - not_2xx, not_2xx,
        (first and last) and (last - first) or 0,
        latency:percentile(50), latency:percentile(99), latency.max,
        errors.connect + errors.read + errors.write + errors.timeout))
end
