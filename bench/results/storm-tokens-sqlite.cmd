chat-bench login-storm --addr 127.0.0.1:13012 --users 8000 --login-concurrency 128 --use-tokens --server-pid 20413 --label sqlite-tokens
