chat-bench login-storm --addr 127.0.0.1:30791 --users 8000 --login-concurrency 128 --server-pid 23890 --label sqlite
