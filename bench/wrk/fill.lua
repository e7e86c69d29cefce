-- fill.lua - GET the keys k%08d from 0 to BENCH_KEYS - 1 in turn (then
-- again from the start), to fill sqlcached's memory tier for bench/scale.
-- Meant for one wrk thread (-t1).
local keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local fmt = os.getenv("BENCH_KEY_FMT") or "k%08d"
local next_key = 0

function request()
   local i = next_key % keys
   next_key = next_key + 1
   return wrk.format("GET", "/v1/kv/" .. string.format(fmt, i))
end
