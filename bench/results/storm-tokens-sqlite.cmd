chat-bench login-storm --addr 127.0.0.1:21274 --users 8000 --login-concurrency 128 --use-tokens --server-pid 29181 --label sqlite-tokens
