chat-bench sync --addr 127.0.0.1:22612 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.nqG6tN/sync.db --server-pid 32120 --label sqlite
