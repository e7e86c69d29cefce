-- put.lua - PUT (webdis: SET) of BENCH_VALUE-byte values over BENCH_KEYS
-- distinct keys, taken in turn from a random start (see common.lua).
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local c = require("common")

local next_key

function init(args)
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
   next_key = math.random(0, c.keys - 1)
end

function request()
   next_key = (next_key + 1) % c.keys
   return c.put(next_key)
end
