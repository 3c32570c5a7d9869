-- wrk script for scripts/bench.sh: POST /event with varied valid events over keep-alive
-- connections, each with a unique Idempotency-Key, and exact counts by status at the end.
--
--   wrk -t2 -c64 -d13s --latency -s bench/post_event.lua http://127.0.0.1:PORT -- 10 RUN_ID
--
-- Arguments after `--`: how many seconds to send events, and a run id that keeps the keys of
-- one run apart from those of every other run against the same table (a repeated key is
-- answered 200 without a new row, which would break the rows == 2xx check).
--
-- Why the script ends the run itself: when wrk's -d expires it drops the requests in flight,
-- which the server may already have stored, so rows and counted answers differ by up to the
-- number of connections. Here each thread stops sending events after the given seconds (a
-- connection that asks for more is held back by `delay`), and stops once every event it sent
-- is answered. -d is only a safety net a few seconds longer. The last line `done` prints is
-- what bench.sh parses.

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
    headers = { ["Content-Type"] = "application/json" }
    ping = wrk.format("GET", "/healthz")
    sent = 0       -- events sent
    answered = 0   -- events answered
    pings = 0      -- /healthz sent after the cutoff
    by_status = {} -- status -> events answered with it
    first_sent = nil
    last_answer = nil
    cutoff = nil
    dry_run_pending = thread_id == 0
end

-- Past the cutoff, connections wait instead of sending; the thread stops before they would.
function delay()
    if cutoff ~= nil and now() >= cutoff then
        return 60000
    end
    return 0
end

function request()
    if dry_run_pending then
        -- wrk 4 calls request() once on the first thread before the run, only to check the
        -- request; that one is never sent, so it must not count.
        dry_run_pending = false
        return wrk.format("POST", "/event", headers, string.format(templates[1], 0))
    end
    local t = now()
    if cutoff == nil then
        first_sent = t
        cutoff = t + event_seconds
    end
    if t >= cutoff then
        -- Only when a thread waits more than a minute for an answer: nothing to store.
        pings = pings + 1
        return ping
    end
    sent = sent + 1
    -- A random prefix spreads the keys over the unique index like UUIDs do (pgbench inserts
    -- gen_random_uuid() keys); the suffix makes them unique.
    headers["Idempotency-Key"] = string.format("%08x%08x-%s-%d-%d",
        math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), run_id, thread_id, sent)
    local body = string.format(templates[sent % #templates + 1], sent)
    return wrk.format("POST", "/event", headers, body)
end

function response(status, response_headers, body)
    if body == '{"status":"ok"}' then
        return -- a /healthz ping
    end
    answered = answered + 1
    by_status[status] = (by_status[status] or 0) + 1
    local t = now()
    last_answer = t
    if t >= cutoff and answered >= sent then
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local sent_total, answered_total, pings_total = 0, 0, 0
    local ok, not_ok = 0, 0
    local statuses = {}
    local first, last = nil, nil
    for _, thread in ipairs(threads) do
        sent_total = sent_total + thread:get("sent")
        answered_total = answered_total + thread:get("answered")
        pings_total = pings_total + thread:get("pings")
        for status, n in pairs(thread:get("by_status")) do
            statuses[status] = (statuses[status] or 0) + n
            if status >= 200 and status < 300 then ok = ok + n else not_ok = not_ok + n end
        end
        local f, l = thread:get("first_sent"), thread:get("last_answer")
        if f and (first == nil or f < first) then first = f end
        if l and (last == nil or l > last) then last = l end
    end
    local list = {}
    for status, n in pairs(statuses) do table.insert(list, status .. ":" .. n) end
    table.sort(list)
    local window = (first and last) and (last - first) or 0
    io.write(string.format(
        "BENCH sent=%d answered=%d ok_2xx=%d not_2xx=%d pings=%d window_s=%.3f " ..
        "p50_us=%d p99_us=%d max_us=%d socket_errors=%d statuses=%s\n",
        sent_total, answered_total, ok, not_ok, pings_total, window,
        latency:percentile(50), latency:percentile(99), latency.max,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        table.concat(list, ",")))
end
