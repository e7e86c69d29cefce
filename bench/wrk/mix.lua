-- mix.lua - GET/PUT mix over BENCH_KEYS keys chosen with a Zipf
-- distribution (BENCH_ZIPF, default 0.99; rank r is key k<r>, so k0 is the
-- hottest), BENCH_WRITE_PCT percent PUTs (default 10). See common.lua.
--
-- The sampler is the one of YCSB (Gray et al., "Quickly generating
-- billion-record synthetic databases"): zeta(n) once, then O(1) per draw.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local c = require("common")

local theta = tonumber(os.getenv("BENCH_ZIPF") or "0.99")
local write_pct = tonumber(os.getenv("BENCH_WRITE_PCT") or "10")
local n = c.keys
local zetan, alpha, eta, half_pow

local function zeta(count)
   local sum = 0
   for i = 1, count do
      sum = sum + 1 / (i ^ theta)
   end
   return sum
end

local function zipf()
   local u = math.random()
   local uz = u * zetan
   if uz < 1 then
      return 0
   end
   if uz < 1 + half_pow then
      return 1
   end
   local r = math.floor(n * (eta * u - eta + 1) ^ alpha)
   return r < n and r or n - 1
end

function init(args)
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
   zetan = zeta(n)
   alpha = 1 / (1 - theta)
   half_pow = 0.5 ^ theta
   eta = (1 - (2 / n) ^ (1 - theta)) / (1 - zeta(2) / zetan)
end

function request()
   local k = zipf()
   if math.random(100) <= write_pct then
      return c.put(k)
   end
   return c.get(k)
end
