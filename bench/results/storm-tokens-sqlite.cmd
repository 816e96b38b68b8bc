chat-bench login-storm --addr 127.0.0.1:33207 --users 8000 --login-concurrency 128 --use-tokens --server-pid 26718 --label sqlite-tokens
