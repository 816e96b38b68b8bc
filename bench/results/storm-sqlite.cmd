chat-bench login-storm --addr 127.0.0.1:20437 --users 8000 --login-concurrency 128 --server-pid 8499 --label sqlite
