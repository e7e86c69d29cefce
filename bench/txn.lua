-- txn.lua - wrk script: POST /v1/txn with BENCH_TXN_COMPARES compares
-- (default 2: "exists": true on guard keys bench:g0..g63, which the runner
-- creates first, so every compare holds) and BENCH_TXN_PUTS puts (default
-- 2) of 100-byte values to keys bench:N, N drawn at random from
-- 1..BENCH_KEYS (default 100000). Each wrk thread seeds its own generator.

local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
local compares = tonumber(os.getenv("BENCH_TXN_COMPARES") or "2")
local puts = tonumber(os.getenv("BENCH_TXN_PUTS") or "2")
local value = string.rep("v", 100)
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
   local c, s = {}, {}
   for i = 1, compares do
      c[i] = '{"key":"bench:g' .. math.random(0, 63) .. '","exists":true}'
   end
   for i = 1, puts do
      s[i] = '{"op":"put","key":"bench:' .. math.random(keys) .. '","value":"' .. value .. '"}'
   end
   local body = '{"compare":[' .. table.concat(c, ",") .. '],"success":[' ..
      table.concat(s, ",") .. ']}'
   return wrk.format("POST", "/v1/txn", headers, body)
end
