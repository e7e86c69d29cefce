-- scale.lua - GET of uniformly random keys for bench/scale.
--
-- Environment:
--   BENCH_KEYS   keys in the database, named by BENCH_KEY_FMT from 0 on
--   BENCH_MISS   1: ask for keys that do not exist (numbers BENCH_KEYS ..
--                2 * BENCH_KEYS - 1, the same shape as the present ones)
--   BENCH_KEY_FMT  default "k%08d"
local keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
local miss = os.getenv("BENCH_MISS") == "1"
local fmt = os.getenv("BENCH_KEY_FMT") or "k%08d"

function init(args)
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
   local i = math.random(0, keys - 1)
   if miss then
      i = i + keys
   end
   return wrk.format("GET", "/v1/kv/" .. string.format(fmt, i))
end
