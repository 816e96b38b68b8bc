chat-bench sync --addr 127.0.0.1:16705 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.7alc7T/sync.db --server-pid 6712 --label sqlite
