-- common.lua - request builders shared by the bench/compare wrk scripts.
--
-- Environment (read once per wrk thread):
--   BENCH_FLAVOR  sqlcached | webdis | nginx   (which URL scheme to speak)
--   BENCH_KEYS    number of distinct keys (k0 .. kN-1)
--   BENCH_VALUE   value size in bytes (default 100)
local M = {}

M.flavor = os.getenv("BENCH_FLAVOR") or "sqlcached"
M.keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
M.value = string.rep("v", tonumber(os.getenv("BENCH_VALUE") or "100"))

local get_prefix, put_prefix, get_suffix = "/v1/kv/k", "/v1/kv/k", ""
if M.flavor == "webdis" then
   -- .txt: webdis answers the raw string (text/plain), as sqlcached answers
   -- the raw value; its JSON wrapping would only cost it more.
   get_prefix, put_prefix, get_suffix = "/GET/k", "/SET/k", ".txt"
elseif M.flavor == "nginx" then
   get_prefix, put_prefix = "/k", "/k"
end

local put_headers = { ["Content-Type"] = "application/octet-stream" }

function M.get(i)
   return wrk.format("GET", get_prefix .. i .. get_suffix)
end

function M.put(i)
   return wrk.format("PUT", put_prefix .. i, put_headers, M.value)
end

return M
