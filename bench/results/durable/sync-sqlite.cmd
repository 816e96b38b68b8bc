chat-bench sync --addr 127.0.0.1:24545 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.MA3qeU/sync.db --server-pid 23334 --label sqlite
