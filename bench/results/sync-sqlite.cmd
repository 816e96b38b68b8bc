chat-bench sync --addr 127.0.0.1:32227 --peers 100 --per-peer 100 --sqlite-db /tmp/clusterchat-bench.lk8HHt/sync.db --server-pid 5736 --label sqlite
