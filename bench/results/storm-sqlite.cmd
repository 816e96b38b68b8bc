chat-bench login-storm --addr 127.0.0.1:48691 --users 8000 --login-concurrency 128 --server-pid 17567 --label sqlite
