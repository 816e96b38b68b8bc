chat-bench sync --addr 127.0.0.1:11668 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.0nKVjw/sync.db --server-pid 18325 --label sqlite
