-- wrk script for scripts/bench.py.
--
-- Every scenario counts answers outside 2xx (wrk itself only counts 4xx and 5xx) and ends
-- with one "BENCH_RESULT {json}" line that bench.py reads. With BENCH_MODE=ingest each
-- request is a POST of BENCH_BATCH fresh records (an object when BENCH_BATCH is 1, else an
-- array); event ids are BENCH_RUN, the thread's number and a counter, so they never repeat
-- within a run, and BENCH_RUN differs between runs. Headers (the token, the session
-- cookie) come from wrk's -H options. The naive peer (scripts/bench_peer) gets the same
-- requests without BENCH_TOKENS, so without an Authorization header: it has no auth.

local mode = os.getenv("BENCH_MODE") or "get"
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local run = os.getenv("BENCH_RUN") or "run"
-- BENCH_TOKENS: comma-separated bearer tokens, one per desktop app; each request uses the
-- next one, so that the records come from many users as they would in production.
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  table.insert(tokens, token)
end
local models = {
  "Stable Diffusion XL", "Stable Diffusion XL", "Stable Diffusion XL", "Flux.1 dev",
  "Flux.1 dev", "DALL-E 3", "DALL-E 3", "Midjourney v7", "Stable Diffusion 1.5",
  "Imagen 4", "Ideogram 3", "Kandinsky 3",
}
local counts = { 1, 1, 1, 1, 2, 2, 4, 4, 8 }

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread globals (each wrk thread has its own Lua state).
non2xx = 0
counter = 0

function init(args)
  math.randomseed(os.time() + (thread_id or 0) * 7919)
  if mode == "ingest" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

local function record(now)
  counter = counter + 1
  -- Within the last two hours, as a desktop client's queue would hold them.
  local moment = os.date("!%Y-%m-%dT%H:%M:%SZ", now - math.random(0, 7200))
  return string.format(
    '{"modelName":"%s","imageCount":%d,"timestamp":"%s","id":"%s-%d-%d"}',
    models[math.random(#models)], counts[math.random(#counts)], moment, run, thread_id, counter
  )
end

if mode == "ingest" then
  function request()
    local now = os.time()
    if batch == 1 then
      local headers = nil
      if #tokens > 0 then
        -- Headers given to wrk.format replace wrk.headers (Host is copied over), so the
        -- Content-Type goes here too.
        headers = {
          ["Content-Type"] = "application/json",
          ["Authorization"] = "Bearer " .. tokens[(counter + thread_id) % #tokens + 1],
        }
      end
      return wrk.format(nil, nil, headers, record(now))
    end
    local items = {}
    for i = 1, batch do
      items[i] = record(now)
    end
    return wrk.format(nil, nil, nil, "[" .. table.concat(items, ",") .. "]")
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local outside = 0
  for _, thread in ipairs(threads) do
    outside = outside + (thread:get("non2xx") or 0)
  end
  local errors = summary.errors
  -- The latency at the middle of each thousandth of the requests, so that bench.py can
  -- pool runs taken in turns (the site's and the peer's) into one distribution.
  local quantiles = {}
  for i = 1, 1000 do
    quantiles[i] = string.format("%d", latency:percentile((i - 0.5) / 10))
  end
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "non2xx": %d, "socket_errors": %d, "timeouts": %d, ' ..
    '"quantiles_us": [%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, outside,
    errors.connect + errors.read + errors.write, errors.timeout, table.concat(quantiles, ",")
  ))
end
