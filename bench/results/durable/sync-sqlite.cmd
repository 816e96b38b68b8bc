chat-bench sync --addr 127.0.0.1:22926 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.3g5t0k/sync.db --server-pid 2594 --label sqlite
