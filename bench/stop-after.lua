-- wrk script for bench/rss.sh: stop after a number of responses.
--   wrk -t1 ... -s stop-after.lua URL -- LIMIT MARKER_FILE
-- After LIMIT responses the thread stops and MARKER_FILE is written; the
-- caller then interrupts wrk (SIGINT), which prints its usual summary.
local limit, n, marker = 0, 0, nil

function init(args)
    limit = tonumber(args[1])
    marker = args[2]
end

function response(status, headers, body)
    n = n + 1
    if n == limit then
        local f = io.open(marker, "w")
        f:write(n)
        f:close()
        wrk.thread:stop()
    end
end
