chat-bench login-storm --addr 127.0.0.1:41135 --users 8000 --login-concurrency 128 --server-pid 7101 --label sqlite
