-- One fixed request (headers given with -H): wrk builds it once.
-- Usage: wrk ... -s bench/wrk-static.lua URL
dofile(os.getenv("BENCH_REPORT_LUA") or "bench/report.lua")
