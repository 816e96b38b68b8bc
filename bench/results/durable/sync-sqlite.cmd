chat-bench sync --addr 127.0.0.1:24287 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.ryTwtX/sync.db --server-pid 602 --label sqlite
