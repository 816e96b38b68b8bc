chat-bench sync --addr 127.0.0.1:19637 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.0TNQv5/sync.db --server-pid 11109 --label sqlite
