-- A different bearer token on every request, read from a file (one per
-- line), so that every request is a decision-cache miss by construction.
-- Usage: wrk ... -s bench/wrk-tokens.lua URL -- TOKEN_FILE [START_INDEX]
dofile(os.getenv("BENCH_REPORT_LUA") or "bench/report.lua")

local tokens = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then tokens[#tokens + 1] = "Bearer " .. line end
  end
  i = tonumber(args[2] or "0") or 0
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
